"""A plain interactions CSV (plus an optional items CSV and .npy features) to a bundle.

Files ending in ``.tsv`` or ``.tab`` are tab-separated, everything else comma-separated,
both with a header row and CSV quoting.

Item order. With ``items_csv`` an item's source row is its position in that file; without
it, the distinct item ids of the interactions file sorted (numerically when every id is an
integer, else as strings). ``npy_features`` rows follow that order. Internal ids keep it,
restricted to the items left after filtering.

Text modalities join the non-empty values of the given columns with ". " and encode them
with all-MiniLM-L6-v2.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from trainer.data import text
from trainer.data.checks import check_features
from trainer.data.dataset import write_dataset
from trainer.data.importers.common import RawInteractions, encode_keys, prepare, sorted_keys
from trainer.data.tables import Table, read_table, row_error
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
    it = read_table(inter_path, delimiter=_delimiter(inter_path))
    it.require(user_col, item_col, *(c for c in (rating_col, timestamp_col) if c))
    users, items = _non_empty(it, user_col), _non_empty(it, item_col)
    items_table = None
    if items_csv is not None:
        items_table = _read_items(Path(items_csv), item_col, text_cols, title_col, category_col)
        item_keys = items_table.column(item_col)
        _check_known_items(it, items, item_keys)
    else:
        item_keys = sorted_keys(items)
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
        stats={"raw": inter_path.name, **prep.stats},
    )


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def _non_empty(table: Table, col: str) -> list[str]:
    values = [v.strip() for v in table.column(col)]
    empty = [r for r, v in enumerate(values) if not v]
    if empty:
        raise row_error(table.label, empty[0] + 1, f"{col} is empty")
    return values


def _read_items(
    path: Path,
    item_col: str,
    text_cols: dict[str, list[str]],
    title_col: str | None,
    category_col: str | None,
) -> Table:
    table = read_table(path, delimiter=_delimiter(path))
    needed = [item_col, *(c for cols in text_cols.values() for c in cols)]
    table.require(*dict.fromkeys(needed + [c for c in (title_col, category_col) if c]))
    keys = _non_empty(table, item_col)
    first: dict[str, int] = {}
    for r, k in enumerate(keys):
        if k in first:
            raise DataError(
                f"{table.label}: rows {first[k] + 1} and {r + 1} have the same {item_col} {k!r}"
            )
        first[k] = r
    j = table.header.index(item_col)
    for row, k in zip(table.rows, keys, strict=True):
        row[j] = k  # stripped, so lookups match the interactions file's stripped ids
    return table


def _check_known_items(table: Table, items: list[str], item_keys: list[str]) -> None:
    known = set(item_keys)
    for r, k in enumerate(items):
        if k not in known:
            raise row_error(table.label, r + 1, f"item {k!r} is not in the items file")


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
