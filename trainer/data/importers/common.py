"""The pipeline every importer shares: dedupe, positives, k-core, id remap, per-user split.

Importers parse their source into :class:`RawInteractions` (integer codes into key lists
whose order becomes the internal id order), call :func:`prepare`, build the features of
the kept items and hand everything to :func:`~trainer.data.dataset.write_dataset`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from trainer.data.split import implicit_positives, k_core, split_per_user
from trainer.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class RawInteractions:
    """Parsed source rows. ``users``/``items`` index ``user_keys``/``item_keys``."""

    users: np.ndarray  # int64 [n]
    items: np.ndarray  # int64 [n]
    user_keys: list[str]
    item_keys: list[str]
    ratings: np.ndarray | None = None  # float64 [n]
    timestamps: np.ndarray | None = None  # int64 [n]
    source: str = "interactions"  # file name, for messages


@dataclass
class Prepared:
    """Filtered, remapped and split interactions, ready for ``write_dataset``."""

    interactions: np.ndarray  # int64 [n, 3] (user, item, x_label), internal ids
    ratings: np.ndarray | None
    timestamps: np.ndarray | None
    user_keys: list[str]  # external id of each internal user
    item_codes: np.ndarray  # int64 [n_items]: the source code of each internal item
    item_keys: list[str]  # external id of each internal item
    stats: dict = field(default_factory=dict)


def prepare(
    raw: RawInteractions,
    *,
    min_rating: float | None,
    k_core_k: int,
    seed: int,
    ratios: tuple[float, float, float],
) -> Prepared:
    """Dedupe, keep positives, k-core filter, remap ids (code order) and split per user.

    A (user, item) pair that occurs more than once keeps its latest row (by timestamp, then
    file order): the most recent opinion is the user's current one.
    """
    n_raw = len(raw.users)
    keep = latest_per_pair(raw.users, raw.items, raw.timestamps)
    n_dupes = int(n_raw - keep.sum())
    if n_dupes:
        log.warning(
            "%s: %d repeated (user, item) rows collapsed to their latest", raw.source, n_dupes
        )
    if raw.ratings is not None:
        keep &= implicit_positives(raw.ratings, min_rating)
    elif min_rating is not None:
        raise DataError(f"{raw.source}: min_rating={min_rating} needs a rating column")
    n_pos = int(keep.sum())
    idx = np.flatnonzero(keep)
    core = k_core(np.stack([raw.users[idx], raw.items[idx]], axis=1), k_core_k)
    idx = idx[core]
    if idx.size == 0:
        raise DataError(
            f"{raw.source}: no interactions left after min_rating={min_rating} and "
            f"k_core={k_core_k} ({n_pos} positives before the k-core filter)"
        )
    # Internal ids follow the importer's code order (e.g. numeric MovieLens ids).
    user_codes, users = np.unique(raw.users[idx], return_inverse=True)
    item_codes, items = np.unique(raw.items[idx], return_inverse=True)
    pairs = np.stack([users, items], axis=1).astype(np.int64)
    labels = split_per_user(pairs, ratios, seed)
    return Prepared(
        interactions=np.concatenate([pairs, labels[:, None]], axis=1),
        ratings=None if raw.ratings is None else raw.ratings[idx],
        timestamps=None if raw.timestamps is None else raw.timestamps[idx],
        user_keys=[raw.user_keys[c] for c in user_codes],
        item_codes=item_codes.astype(np.int64),
        item_keys=[raw.item_keys[c] for c in item_codes],
        stats={
            "raw_interactions": n_raw,
            "dropped_duplicate_rows": n_dupes,
            "positives_rating_ge": min_rating,
            "positives_before_kcore": n_pos,
            "k_core": k_core_k,
            "seed": seed,
            "ratios": list(ratios),
        },
    )


def latest_per_pair(
    users: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None
) -> np.ndarray:
    """Bool mask keeping one row per (user, item): the latest timestamp, ties to the last row."""
    n = len(users)
    row = np.arange(n)
    ts = np.zeros(n, np.int64) if timestamps is None else timestamps
    order = np.lexsort((row, ts, items, users))  # last of each pair group = the one to keep
    u, i = users[order], items[order]
    last = np.r_[(u[1:] != u[:-1]) | (i[1:] != i[:-1]), True]
    keep = np.zeros(n, dtype=bool)
    keep[order[last]] = True
    return keep


def sorted_keys(values: list[str]) -> list[str]:
    """Distinct ids, numerically sorted when all are integers (MovieLens, most logs)."""
    distinct = set(values)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def encode_keys(values: list[str], keys: list[str]) -> np.ndarray:
    """Codes of ``values`` in ``keys`` (every value must be a key)."""
    index = {k: c for c, k in enumerate(keys)}
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
