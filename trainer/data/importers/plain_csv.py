"""A plain interactions CSV (plus an optional items CSV and .npy features) to a bundle.

Files ending in ``.tsv`` or ``.tab`` are tab-separated, everything else comma-separated,
both with a header row and CSV quoting.

Item order. With ``items_csv`` an item's source row is its position in that file; without
it, the distinct item ids of the interactions file sorted (numerically when every id is an
integer, else as strings). ``npy_features`` rows follow that order. Internal ids keep it,
restricted to the items left after filtering.

Text modalities join the non-empty values of the given columns with ". " and encode them
with all-MiniLM-L6-v2.

Bad rows. Every bad row of the interactions file (wrong number of fields, empty id, a rating
that is not a finite number, a timestamp that is not a 64-bit integer, an item the items file
lacks) is reported in one error, earliest first, with their count; ``drop_bad_rows`` skips them
instead (counted as ``dropped_bad_rows`` in stats.json and logged), as the MovieLens importer
does with its stray rows. The items file's bad rows are always an error.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from trainer.data import text
from trainer.data.checks import check_features
from trainer.data.dataset import write_dataset
from trainer.data.importers.common import RawInteractions, encode_keys, prepare, sorted_keys
from trainer.data.tables import RowProblem, Table, bad_rows_error, read_table
from trainer.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def import_csv(
    interactions_csv: str | Path,
    out: str | Path,
    *,
    items_csv: str | Path | None = None,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    min_rating: float | None = None,
    text_cols: dict[str, list[str]] | None = None,
    npy_features: dict[str, str | Path] | None = None,
    title_col: str | None = None,
    category_col: str | None = None,
    k_core: int = 0,
    seed: int = 2026,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    overwrite: bool = False,
    name: str | None = None,
    progress: bool = True,
    drop_bad_rows: bool = False,
    max_reported: int = 20,
) -> Path:
    """Import interactions (and item content) from CSV; returns the written bundle path.

    Parameters
    ----------
    items_csv
        One row per item, keyed by ``item_col``; source of text, title and categories.
    text_cols
        Modality name -> columns of ``items_csv`` joined and encoded with MiniLM.
    npy_features
        Modality name -> .npy file (float [n_source_items, d]) in the item order above.
    category_col
        Pipe-separated categories column of ``items_csv``.
    name
        Dataset name (``.inter`` stem); default the interactions file's stem.
    drop_bad_rows
        Skip the interactions file's bad rows instead of refusing the file.
    max_reported
        How many bad rows the error message lists (all are counted).
    """
    text_cols, npy_features = text_cols or {}, npy_features or {}
    both = set(text_cols) & set(npy_features)
    if both:
        raise ConfigError(f"modality {', '.join(sorted(both))} given as both text and npy")
    if items_csv is None and (text_cols or title_col or category_col):
        raise ConfigError("text_cols, title_col and category_col need items_csv")
    if min_rating is not None and rating_col is None:
        raise ConfigError("min_rating needs rating_col")

    inter_path = Path(interactions_csv)
    it = read_table(inter_path, delimiter=_delimiter(inter_path), ragged=True)
    it.require(user_col, item_col, *(c for c in (rating_col, timestamp_col) if c))
    items_table = None
    if items_csv is not None:
        items_table = _read_items(
            Path(items_csv), item_col, text_cols, title_col, category_col, max_reported
        )
    known = set(items_table.column(item_col)) if items_table is not None else None
    problems = _interaction_problems(it, user_col, item_col, rating_col, timestamp_col, known)
    dropped = 0
    if problems and not drop_bad_rows:
        hint = "; --drop-bad-rows skips them"
        raise bad_rows_error(it.label, problems, max_reported, hint)
    if problems:
        bad = {p.row - 1 for p in problems}
        it.rows = [row for r, row in enumerate(it.rows) if r not in bad]
        dropped = len(bad)
        log.warning("%s: dropped %d bad row(s) (first: row %d: %s)", it.label, dropped,
                    problems[0].row, problems[0].reason)  # fmt: skip
        if not it.rows:
            raise DataError(f"{it.label}: every row is bad")
    users = [v.strip() for v in it.column(user_col)]
    items = [v.strip() for v in it.column(item_col)]
    item_keys = items_table.column(item_col) if items_table is not None else sorted_keys(items)
    user_keys = sorted_keys(users)
    raw = RawInteractions(
        users=encode_keys(users, user_keys),
        items=encode_keys(items, item_keys),
        user_keys=user_keys,
        item_keys=item_keys,
        ratings=it.floats(rating_col) if rating_col else None,
        timestamps=it.ints(timestamp_col) if timestamp_col else None,
        source=it.label,
    )
    prep = prepare(raw, min_rating=min_rating, k_core_k=k_core, seed=seed, ratios=ratios)

    features: dict[str, np.ndarray] = {}
    for m, path in npy_features.items():
        features[m] = _load_source_npy(Path(path), len(item_keys))[prep.item_codes]
    for m, cols in text_cols.items():
        assert items_table is not None
        values = [items_table.column(c) for c in cols]
        texts = [". ".join(v[r].strip() for v in values if v[r].strip()) for r in prep.item_codes]
        log.info("encoding %d texts for modality %s", len(texts), m)
        features[m] = text.encode_texts(texts, progress=progress)
    item_meta = None
    if items_table is not None and (title_col or category_col):
        titles = items_table.column(title_col) if title_col else None
        cats = items_table.column(category_col) if category_col else None
        item_meta = [
            {
                "title": (titles[r].strip() or None) if titles else None,
                "categories": [c.strip() for c in cats[r].split("|") if c.strip()] if cats else [],
            }
            for r in prep.item_codes
        ]
    return write_dataset(
        out,
        name=name or inter_path.stem,
        interactions=prep.interactions,
        features=features,
        user_ids=prep.user_keys,
        item_ids=prep.item_keys,
        item_meta=item_meta,
        ratings=prep.ratings,
        timestamps=prep.timestamps,
        overwrite=overwrite,
        stats={"raw": inter_path.name, "dropped_bad_rows": dropped, **prep.stats},
    )


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def _interaction_problems(
    table: Table,
    user_col: str,
    item_col: str,
    rating_col: str | None,
    timestamp_col: str | None,
    known_items: set[str] | None,
) -> list[RowProblem]:
    """Every bad row of the interactions table (row order), each with all of its reasons."""
    width = len(table.header)
    j = {c: table.header.index(c) for c in (user_col, item_col, rating_col, timestamp_col) if c}
    problems = []
    for r, row in enumerate(table.rows):
        if len(row) != width:
            problems.append(RowProblem(r + 1, f"expected {width} fields, found {len(row)}"))
            continue
        reasons = [f"{c} is empty" for c in (user_col, item_col) if not row[j[c]].strip()]
        item = row[j[item_col]].strip()
        if known_items is not None and item and item not in known_items:
            reasons.append(f"item {item!r} is not in the items file")
        if rating_col and (why := _not_finite(row[j[rating_col]])):
            reasons.append(f"{rating_col} {row[j[rating_col]]!r} {why}")
        if timestamp_col and (why := _not_int64(row[j[timestamp_col]])):
            reasons.append(f"{timestamp_col} {row[j[timestamp_col]]!r} {why}")
        if reasons:
            problems.append(RowProblem(r + 1, ", ".join(reasons)))
    return problems


def _not_finite(text: str) -> str | None:
    """Why ``text`` is not a finite number, or None (the wording of ``parse_floats``)."""
    try:
        return None if math.isfinite(float(text)) else "is not a finite number"
    except ValueError:
        return "is not a number"


def _not_int64(text: str) -> str | None:
    """Why ``text`` is not a 64-bit integer, or None (the wording of ``parse_ints``)."""
    try:
        return None if -(2**63) <= int(text) < 2**63 else "is out of the int64 range"
    except ValueError:
        return "is not an integer"


def _read_items(
    path: Path,
    item_col: str,
    text_cols: dict[str, list[str]],
    title_col: str | None,
    category_col: str | None,
    max_reported: int,
) -> Table:
    table = read_table(path, delimiter=_delimiter(path), ragged=True)
    needed = [item_col, *(c for cols in text_cols.values() for c in cols)]
    table.require(*dict.fromkeys(needed + [c for c in (title_col, category_col) if c]))
    width, j = len(table.header), table.header.index(item_col)
    problems, first = [], {}
    for r, row in enumerate(table.rows):
        if len(row) != width:
            problems.append(RowProblem(r + 1, f"expected {width} fields, found {len(row)}"))
            continue
        key = row[j] = row[j].strip()  # stripped, so lookups match the interactions' ids
        if not key:
            problems.append(RowProblem(r + 1, f"{item_col} is empty"))
        elif key in first:
            problems.append(RowProblem(r + 1, f"{item_col} {key!r} repeats row {first[key]}"))
        else:
            first[key] = r + 1
    if problems:
        raise bad_rows_error(table.label, problems, max_reported, "")
    return table


def _load_source_npy(path: Path, n_rows: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a plain numeric .npy array ({e})") from None
    if arr.ndim == 2 and arr.shape[0] != n_rows:
        raise DataError(
            f"{path}: has {arr.shape[0]} rows but there are {n_rows} source items "
            "(rows must follow the items file, or the sorted item ids)"
        )
    return check_features(arr, n_rows, label=str(path))
