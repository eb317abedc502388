"""MovieLens folders (ml-latest-small or ml-100k) to a dataset bundle.

Modalities written:

``text``
    all-MiniLM-L6-v2 embedding of the movie title (title as given, year included).
``meta``
    Genre multi-hot over the sorted genre vocabulary of the source (placeholders
    "(no genres listed)" / "unknown" included as their own column), plus one column with
    the release year min-max scaled to [0, 1] over the kept movies. A movie whose year
    cannot be parsed gets the median year of the kept movies that have one (a neutral
    value that does not stretch the scale); ``stats.json`` counts them.
``tags`` (``with_tags=True``, ml-latest-small only)
    MiniLM of the movie's distinct tags (case-insensitive), most used first, joined with
    ", ". Movies nobody tagged get the L2-normalised mean embedding of the tagged movies:
    an uninformative row at the centre of the modality rather than a fake text. They are
    marked in ``tags_missing.npy`` (bool [n_items]) beside the features.

Stray rows: a rating whose movie is missing from the movie list has no content for any
modality, so it is dropped, counted (``dropped_stray_rows`` in stats.json) and logged.
ml-latest-small as distributed has one: ``999,999999,5.0,...``, the last line of
ratings.csv (a user and a movie that exist nowhere else).

External ids are the MovieLens ids as strings; internal ids follow their numeric order.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np

from trainer.data import text
from trainer.data.dataset import write_dataset
from trainer.data.importers.common import RawInteractions, prepare
from trainer.data.tables import Table, parse_ints, read_table, read_text, row_error
from trainer.errors import DataError

log = logging.getLogger(__name__)

# ml-100k's u.item genre flags, in file order (the dataset's README; u.genre repeats it).
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
NO_GENRE = ("(no genres listed)", "unknown")  # vocabulary entries that are not categories
_TITLE_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$")
_DATE_YEAR = re.compile(r"(\d{4})\s*$")


def import_movielens(
    path: str | Path,
    out: str | Path,
    *,
    min_rating: float | None = 4.0,
    k_core: int = 5,
    seed: int = 2026,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    with_tags: bool = False,
    overwrite: bool = False,
    name: str | None = None,
    progress: bool = True,
) -> Path:
    """Import a MovieLens folder; returns the written bundle path.

    Parameters
    ----------
    path
        ml-latest-small (ratings.csv, movies.csv[, tags.csv]) or ml-100k (u.data, u.item).
    min_rating
        Ratings >= this are positives; None keeps every rating.
    k_core
        Iterative user and item k-core after thresholding; 0 turns it off.
    name
        Dataset name (``.inter`` stem); default "mlsmall" or "ml100k".
    """
    src = Path(path)
    if (src / "ratings.csv").is_file() and (src / "movies.csv").is_file():
        variant = "ml-latest-small"
        raw, movies = _read_latest(src)
    elif (src / "u.data").is_file() and (src / "u.item").is_file():
        if with_tags:
            raise DataError(f"{src}: with_tags needs ml-latest-small's tags.csv; ml-100k has none")
        variant = "ml-100k"
        raw, movies = _read_100k(src)
    else:
        raise DataError(
            f"{src}: not a MovieLens folder (expected ratings.csv + movies.csv for "
            "ml-latest-small, or u.data + u.item for ml-100k)"
        )
    prep = prepare(raw, min_rating=min_rating, k_core_k=k_core, seed=seed, ratios=ratios)
    kept = [movies.rows[c] for c in prep.item_codes]
    titles = [m[0] for m in kept]

    # Read tags before the slow title encoding, so a bad tags.csv fails fast.
    tag_texts = _tag_texts(src / "tags.csv", prep.item_keys) if with_tags else None

    features: dict[str, np.ndarray] = {}
    meta, meta_stats = _meta_features([m[1] for m in kept], movies.vocab, [m[2] for m in kept])
    features["meta"] = meta
    log.info("encoding %d titles", len(titles))
    features["text"] = text.encode_texts(titles, progress=progress)
    extra_arrays: dict[str, np.ndarray] = {}
    prep.stats.pop("raw_interactions")
    stats = {
        "raw": variant,
        "raw_ratings": movies.rating_rows,
        "dropped_stray_rows": movies.stray,
        **prep.stats,
        "text_feat": {"model": text.MODEL_NAME, "input": "movie title", "normalized": True},
        "meta_feat": meta_stats,
    }
    if tag_texts is not None:
        features["tags"], missing = _tag_features(tag_texts, len(titles), progress)
        extra_arrays["tags_missing"] = missing
        stats["tags_feat"] = {
            "items_with_tags": int((~missing).sum()),
            "items_missing_tags": int(missing.sum()),
            "missing": "mean embedding of tagged items (tags_missing.npy)",
        }
    readme = src / "README.txt"
    extra_files = {"LICENSE-README.txt": read_text(readme, readme.name)} if readme.is_file() else {}
    return write_dataset(
        out,
        name=name or ("mlsmall" if variant == "ml-latest-small" else "ml100k"),
        interactions=prep.interactions,
        features=features,
        user_ids=prep.user_keys,
        item_ids=prep.item_keys,
        item_meta=[
            {"title": t, "categories": [g for g in m[1] if g not in NO_GENRE]}
            for t, m in zip(titles, kept, strict=True)
        ],
        ratings=prep.ratings,
        timestamps=prep.timestamps,
        extra_files=extra_files,
        extra_arrays=extra_arrays,
        stats=stats,
        overwrite=overwrite,
    )


class _Movies:
    """Movie list: ``rows[code] = (title, genres, year | None)``, code = index in ``keys``."""

    def __init__(
        self, keys: list[str], rows: list[tuple[str, list[str], int | None]], vocab: list[str]
    ) -> None:
        self.keys, self.rows, self.vocab = keys, rows, vocab
        self.rating_rows = 0  # rating rows read, strays included
        self.stray = 0  # rating rows dropped because their movie is not listed


def _read_latest(src: Path) -> tuple[RawInteractions, _Movies]:
    mt = read_table(src / "movies.csv")
    mt.require("movieId", "title", "genres")
    ids = mt.ints("movieId")
    _check_unique_ids(ids, mt)
    titles = [t.strip() for t in mt.column("title")]
    genres = [[g for g in gs.split("|") if g] for gs in mt.column("genres")]
    years = [_year(_TITLE_YEAR, t) for t in titles]
    vocab = sorted({g for gs in genres for g in gs})
    order = np.argsort(ids, kind="stable")
    movies = _Movies(
        [str(ids[r]) for r in order], [(titles[r], genres[r], years[r]) for r in order], vocab
    )

    rt = read_table(src / "ratings.csv")
    rt.require("userId", "movieId", "rating", "timestamp")
    raw = _raw_from(
        rt,
        rt.ints("userId"),
        rt.ints("movieId"),
        rt.floats("rating"),
        rt.ints("timestamp"),
        ids[order],
        movies,
    )
    return raw, movies


def _read_100k(src: Path) -> tuple[RawInteractions, _Movies]:
    n_genres = len(ML100K_GENRES)
    cols = [
        "movie_id",
        "title",
        "release_date",
        "video_release_date",
        "url",
        *(f"g{k}" for k in range(n_genres)),
    ]
    mt = read_table(
        src / "u.item", delimiter="|", encoding="latin-1", columns=cols, quoting=csv.QUOTE_NONE
    )
    ids = mt.ints("movie_id")
    _check_unique_ids(ids, mt)
    names = _genre_names(src / "u.genre")
    flags = np.stack([mt.ints(f"g{k}") for k in range(n_genres)], axis=1)
    bad = (flags != 0) & (flags != 1)
    if bad.any():
        r = int(np.argmax(bad.any(axis=1)))
        raise row_error(mt.label, r + 1, "genre flags must be 0 or 1")
    titles = [t.strip() for t in mt.column("title")]
    dates = mt.column("release_date")
    years = [
        _year(_DATE_YEAR, d) or _year(_TITLE_YEAR, t) for d, t in zip(dates, titles, strict=True)
    ]
    genres = [[names[k] for k in np.flatnonzero(f)] for f in flags]
    order = np.argsort(ids, kind="stable")
    movies = _Movies(
        [str(ids[r]) for r in order],
        [(titles[r], genres[r], years[r]) for r in order],
        sorted(names),
    )

    rt = read_table(
        src / "u.data",
        delimiter="\t",
        columns=["user", "item", "rating", "ts"],
        quoting=csv.QUOTE_NONE,
    )
    raw = _raw_from(
        rt, rt.ints("user"), rt.ints("item"), rt.floats("rating"), rt.ints("ts"), ids[order], movies
    )
    return raw, movies


def _raw_from(
    table: Table,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    ts: np.ndarray,
    movie_ids: np.ndarray,
    movies: _Movies,
) -> RawInteractions:
    """Rating rows as codes; rows whose movie is not in the movie list are dropped (strays)."""
    movies.rating_rows = len(table)
    pos = np.searchsorted(movie_ids, items)
    known = (pos < len(movie_ids)) & (movie_ids[np.minimum(pos, len(movie_ids) - 1)] == items)
    movies.stray = int((~known).sum())
    if movies.stray:
        r = int(np.argmax(~known))
        log.warning(
            "%s: dropped %d rating row(s) whose movie is not in the movie list "
            "(first: row %d, movie %d)",
            table.label,
            movies.stray,
            r + 1,
            items[r],
        )
    user_codes, users_c = np.unique(users[known], return_inverse=True)
    return RawInteractions(
        users=users_c.astype(np.int64),
        items=pos[known].astype(np.int64),
        user_keys=[str(u) for u in user_codes],
        item_keys=movies.keys,
        ratings=ratings[known],
        timestamps=ts[known],
        source=table.label,
    )


def _check_unique_ids(ids: np.ndarray, table: Table) -> None:
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1]) + 1
    if dup.size:
        j = dup[np.argmin(order[dup])]
        raise DataError(
            f"{table.label}: rows {order[j - 1] + 1} and {order[j] + 1} have the "
            f"same movie id {ids[order[j]]}"
        )


def _genre_names(path: Path) -> list[str]:
    """ml-100k genre names from u.genre (``name|index``) when present, else the README's."""
    if not path.is_file():
        return list(ML100K_GENRES)
    t = read_table(
        path, delimiter="|", encoding="latin-1", columns=["name", "index"], quoting=csv.QUOTE_NONE
    )
    idx = parse_ints(t.column("index"), label=t.label, column="index")
    if sorted(idx.tolist()) != list(range(len(ML100K_GENRES))):
        raise DataError(f"{t.label}: expected genre indices 0..{len(ML100K_GENRES) - 1}")
    names = [""] * len(idx)
    for n, k in zip(t.column("name"), idx.tolist(), strict=True):
        names[k] = n
    return names


def _year(pattern: re.Pattern[str], s: str) -> int | None:
    m = pattern.search(s)
    return int(m.group(1)) if m else None


def _meta_features(
    genres: list[list[str]], vocab: list[str], years: list[int | None]
) -> tuple[np.ndarray, dict]:
    """Genre multi-hot over ``vocab`` plus the min-max scaled year; missing year -> median."""
    col = {g: k for k, g in enumerate(vocab)}
    out = np.zeros((len(genres), len(vocab) + 1), dtype=np.float32)
    for i, gs in enumerate(genres):
        out[i, [col[g] for g in gs]] = 1.0
    known = np.array([y for y in years if y is not None], dtype=np.float64)
    fill = float(np.median(known)) if known.size else 0.0
    y = np.array([fill if v is None else v for v in years], dtype=np.float64)
    lo, hi = (float(known.min()), float(known.max())) if known.size else (fill, fill)
    out[:, -1] = (y - lo) / (hi - lo) if hi > lo else 0.0
    stats = {
        "content": "genre multi-hot + min-max scaled year",
        "genres": vocab,
        "year_range": [lo, hi],
        "items_missing_year": int(len(years) - known.size),
        "missing_year": "median year of the kept movies",
    }
    return out, stats


def _tag_texts(path: Path, item_keys: list[str]) -> dict[int, str]:
    """Each kept movie's distinct tags (case-insensitive), most used first, joined by ", "."""
    tt = read_table(path)
    tt.require("movieId", "tag")
    movie = tt.ints("movieId")
    counts: dict[str, Counter[str]] = {}
    spelling: dict[str, str] = {}
    for m, tag in zip(movie.tolist(), tt.column("tag"), strict=True):
        tag = " ".join(tag.split())
        if tag:
            key = tag.lower()
            spelling.setdefault(key, tag)  # first spelling seen stands for all casings
            counts.setdefault(str(m), Counter())[key] += 1
    texts = {}
    for i, k in enumerate(item_keys):
        if k in counts:
            ranked = sorted(counts[k].items(), key=lambda kv: (-kv[1], kv[0]))
            texts[i] = ", ".join(spelling[t] for t, _ in ranked)
    if not texts:
        raise DataError(f"{tt.label}: none of the {len(item_keys)} kept movies has a tag")
    return texts


def _tag_features(
    texts: dict[int, str], n_items: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM of the tag texts; untagged movies get the mean (see module docstring)."""
    rows = list(texts)
    emb = text.encode_texts(list(texts.values()), progress=progress)
    mean = emb.mean(axis=0)
    mean /= max(float(np.linalg.norm(mean)), 1e-12)
    out = np.repeat(mean[None, :], n_items, axis=0).astype(np.float32)
    out[rows] = emb
    missing = np.ones(n_items, dtype=bool)
    missing[rows] = False
    return out, missing
