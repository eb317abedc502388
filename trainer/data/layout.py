"""The files of a dataset bundle (the MMRec layout) and how they are written.

    <name>.inter          tab-separated userID itemID rating timestamp x_label
    <modality>_feat.npy   float32 [n_items, d], row i = item i
    <modality>_corrupt.npy  optional ground-truth corruption mask (benchmarks)
    u_id_mapping.csv, i_id_mapping.csv, stats.json, and any extra files an importer adds

Reading and validating them is trainer/data/dataset.py's; this module only lays them out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.data.mapping import ITEM_COLUMNS, ITEM_MAP, USER_COLUMNS, USER_MAP, write_mapping
from trainer.errors import DataError

INTER_SUFFIX = ".inter"
FEAT_SUFFIX = "_feat.npy"
CORRUPT_SUFFIX = "_corrupt.npy"
STATS_FILE = "stats.json"
INTER_HEADER = ("userID", "itemID", "rating", "timestamp", "x_label")


def check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise DataError(f"invalid dataset name {name!r}: use a plain file stem like 'baby'")


def write_files(
    root: Path,
    *,
    name: str,
    interactions: np.ndarray,
    features: dict[str, np.ndarray],
    user_ids: list[str],
    item_ids: list[str],
    item_meta: list[dict] | None,
    ratings: np.ndarray | None,
    timestamps: np.ndarray | None,
    corruption: dict[str, np.ndarray] | None,
    extra_files: dict[str, str],
    extra_arrays: dict[str, np.ndarray],
) -> None:
    inter = np.asarray(interactions)
    if inter.ndim != 2 or inter.shape[1] != 3 or not np.issubdtype(inter.dtype, np.integer):
        raise DataError(
            f"interactions must be int [n, 3] (user, item, x_label), got "
            f"{inter.dtype} {inter.shape}"
        )
    n = len(inter)
    ratings = np.ones(n) if ratings is None else np.asarray(ratings, dtype=np.float64)
    timestamps = np.zeros(n, np.int64) if timestamps is None else np.asarray(timestamps)
    if ratings.shape != (n,) or timestamps.shape != (n,):
        raise DataError(f"ratings and timestamps must have one value per interaction ({n})")
    if item_meta is not None and len(item_meta) != len(item_ids):
        raise DataError(f"item_meta has {len(item_meta)} entries for {len(item_ids)} items")

    lines = ["\t".join(INTER_HEADER)]
    lines += [
        f"{u}\t{i}\t{r}\t{t}\t{x}"
        for (u, i, x), r, t in zip(
            inter.tolist(), ratings.tolist(), timestamps.tolist(), strict=True
        )
    ]
    (root / f"{name}{INTER_SUFFIX}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_mapping(root / USER_MAP, columns=USER_COLUMNS, ids=[str(u) for u in user_ids])
    write_mapping(
        root / ITEM_MAP, columns=ITEM_COLUMNS, ids=[str(i) for i in item_ids], meta=item_meta
    )
    for m, arr in features.items():
        check_name(m)
        np.save(root / f"{m}{FEAT_SUFFIX}", np.asarray(arr, dtype=np.float32), allow_pickle=False)
    for m, mask in (corruption or {}).items():
        if m not in features:
            raise DataError(f"corruption mask for unknown modality {m!r}")
        np.save(root / f"{m}{CORRUPT_SUFFIX}", np.asarray(mask, dtype=bool), allow_pickle=False)
    for fname, content in extra_files.items():
        (root / extra_name(fname)).write_text(content, encoding="utf-8")
    for fname, arr in extra_arrays.items():
        fname = fname if fname.endswith(".npy") else f"{fname}.npy"
        np.save(root / extra_name(fname), np.asarray(arr), allow_pickle=False)


def extra_name(fname: str) -> str:
    """Extra files must be plain names that cannot be mistaken for bundle files."""
    reserved = fname in (USER_MAP, ITEM_MAP, STATS_FILE) or fname.endswith(
        (INTER_SUFFIX, FEAT_SUFFIX, CORRUPT_SUFFIX)
    )
    if reserved or not fname or "/" in fname or "\\" in fname or fname.startswith("."):
        raise DataError(f"extra file name {fname!r} is not allowed in a bundle")
    return fname
