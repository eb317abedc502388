"""Interaction filtering and the per-user train/valid/test split (pure numpy functions).

Each function returns a boolean row mask or a label per row rather than a filtered copy, so
callers can filter ratings, timestamps and other aligned columns the same way.

Split rule (MMRec-like, random per user). A user with n interactions gets

    n_test  = max(1, round_half_up(r_test * n))    if r_test > 0 and n >= 2, else 0
    n_valid = max(1, round_half_up(r_valid * n))   if r_valid > 0 and n >= 3, else 0
    n_train = n - n_valid - n_test                  (always >= 1)

so every user of a 5-core dataset is evaluated: 5 items -> 3/1/1, 10 -> 8/1/1,
15 -> 11/2/2, 37 -> 29/4/4. With 2 items the user gets 1/0/1 (test is kept before valid),
with 1 item 1/0/0. If the rounded valid and test shares would leave no training item,
valid shrinks first, then test.
"""

from __future__ import annotations

import numpy as np

from trainer.errors import ConfigError

TRAIN, VALID, TEST = 0, 1, 2


def implicit_positives(ratings: np.ndarray, threshold: float | None) -> np.ndarray:
    """Rows that count as positive implicit feedback: ``rating >= threshold``.

    Returns a bool mask; ``threshold=None`` keeps every row. NaN ratings are never positive.
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    if threshold is None:
        return np.ones(len(ratings), dtype=bool)
    return ratings >= threshold


def k_core(pairs: np.ndarray, k: int) -> np.ndarray:
    """Rows kept by the iterative k-core filter on users and items.

    Repeatedly drops every (user, item) row whose user or item has fewer than ``k`` kept
    rows, until nothing changes; the result is the largest subset in which every user and
    every item has at least ``k`` rows. ``k <= 1`` keeps everything.

    Parameters
    ----------
    pairs
        int [n, 2] (user, item); ids need not be contiguous.

    Returns
    -------
    bool [n] mask of kept rows.
    """
    pairs = np.asarray(pairs)
    keep = np.ones(len(pairs), dtype=bool)
    if k <= 1 or len(pairs) == 0:
        return keep
    _, users = np.unique(pairs[:, 0], return_inverse=True)
    _, items = np.unique(pairs[:, 1], return_inverse=True)
    # Each pass drops the rows of under-k users and items; counts only fall, so the loop
    # ends after at most as many passes as there are rows (in practice a handful).
    while True:
        u_count = np.bincount(users[keep], minlength=users.max() + 1)
        i_count = np.bincount(items[keep], minlength=items.max() + 1)
        new = keep & (u_count[users] >= k) & (i_count[items] >= k)
        if new.sum() == keep.sum():
            return new
        keep = new


def split_per_user(
    pairs: np.ndarray, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 2026
) -> np.ndarray:
    """Random per-user split into train/valid/test (rule in the module docstring).

    Deterministic given ``seed`` and the set of pairs: rows are put in (user, item) order
    before the random draw, so shuffling the input rows does not change any row's label.

    Returns
    -------
    int64 [n] x_label per row: 0 train, 1 valid, 2 test.
    """
    r_train, r_valid, r_test = _check_ratios(ratios)
    pairs = np.asarray(pairs)
    n = len(pairs)
    labels = np.zeros(n, dtype=np.int64)
    if n == 0:
        return labels
    rng = np.random.default_rng(seed)
    # Sort by (user, item), then by a random key inside each user: a uniform random
    # permutation of every user's rows, drawn in one vectorised pass.
    canon = np.lexsort((pairs[:, 1], pairs[:, 0]))
    key = np.empty(n)
    key[canon] = rng.random(n)
    order = np.lexsort((key, pairs[:, 0]))
    users = pairs[order, 0]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    sizes = np.diff(np.r_[starts, n])
    n_valid, n_test = split_sizes(sizes, r_valid, r_test)
    rank = np.arange(n) - np.repeat(starts, sizes)  # position inside the user's shuffled rows
    n_train = np.repeat(sizes - n_valid - n_test, sizes)
    first_test = np.repeat(sizes - n_test, sizes)
    ordered = np.where(rank < n_train, TRAIN, np.where(rank < first_test, VALID, TEST))
    labels[order] = ordered
    return labels


def split_sizes(sizes: np.ndarray, r_valid: float, r_test: float) -> tuple[np.ndarray, np.ndarray]:
    """Valid and test counts per user of ``sizes`` interactions (rule in the module docstring)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n_test = np.where((r_test > 0) & (sizes >= 2), np.maximum(1, _round_half_up(r_test * sizes)), 0)
    n_valid = np.where(
        (r_valid > 0) & (sizes >= 3), np.maximum(1, _round_half_up(r_valid * sizes)), 0
    )
    # Keep at least one training item: shrink valid first, then test.
    n_valid = np.minimum(n_valid, np.maximum(sizes - 1 - n_test, 0))
    n_test = np.minimum(n_test, sizes - 1 - n_valid)
    return n_valid, n_test


def _round_half_up(x: np.ndarray) -> np.ndarray:
    # np.round rounds half to even (2.5 -> 2); a split rule should not depend on parity.
    return np.floor(x + 0.5 + 1e-9).astype(np.int64)


def _check_ratios(ratios: tuple[float, float, float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0:
        raise ConfigError(
            f"split ratios must be three non-negative numbers with train > 0, got {ratios}"
        )
    total = float(sum(ratios))
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"split ratios must sum to 1, got {ratios} (sum {total:g})")
    return ratios[0], ratios[1], ratios[2]
