"""Positives, k-core and the per-user split on toy arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data.split import implicit_positives, k_core, split_per_user, split_sizes
from trainer.errors import ConfigError


def test_implicit_positives() -> None:
    r = np.array([5.0, 3.5, 4.0, np.nan])
    assert implicit_positives(r, 4.0).tolist() == [True, False, True, False]
    assert implicit_positives(r, None).all()


def test_k_core_is_iterative() -> None:
    # Users 0-1 and items 10-11 form a 2-core. User 2 has two rows, but item 12 has only
    # one, so dropping it leaves user 2 with one row: only the second pass removes (2, 11).
    pairs = np.array([[0, 10], [0, 11], [1, 10], [1, 11], [2, 11], [2, 12]])
    assert k_core(pairs, 2).tolist() == [True] * 4 + [False, False]
    assert k_core(pairs, 0).all() and k_core(pairs, 1).all()
    assert not k_core(pairs, 3).any()


def test_k_core_result_is_a_core() -> None:
    rng = np.random.default_rng(0)
    pairs = np.unique(rng.integers(0, [60, 80], size=(800, 2)), axis=0)
    keep = k_core(pairs, 5)
    kept = pairs[keep]
    assert 0 < len(kept) < len(pairs)
    assert np.bincount(kept[:, 0]).max() >= 5
    assert (np.unique(kept[:, 0], return_counts=True)[1] >= 5).all()
    assert (np.unique(kept[:, 1], return_counts=True)[1] >= 5).all()
    # Maximal: every dropped row touches a user or item that could not reach k.
    assert k_core(kept, 5).all()


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, (1, 0, 0)),
        (2, (1, 0, 1)),
        (3, (1, 1, 1)),
        (5, (3, 1, 1)),
        (10, (8, 1, 1)),
        (15, (11, 2, 2)),
        (37, (29, 4, 4)),
    ],
)
def test_split_sizes_rule(n: int, expected: tuple[int, int, int]) -> None:
    v, t = split_sizes(np.array([n]), 0.1, 0.1)
    assert (n - v[0] - t[0], v[0], t[0]) == expected


def _pairs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(50), rng.integers(1, 40, size=50))
    items = np.concatenate([rng.permutation(100)[: (users == u).sum()] for u in range(50)])
    return np.stack([users, items], axis=1)


def test_split_per_user_guarantees() -> None:
    pairs = _pairs()
    labels = split_per_user(pairs, (0.8, 0.1, 0.1), seed=7)
    assert labels.dtype == np.int64 and set(np.unique(labels)) <= {0, 1, 2}
    sizes = np.bincount(pairs[:, 0])
    for x, expected in zip((1, 2), split_sizes(sizes, 0.1, 0.1), strict=True):
        assert np.bincount(pairs[labels == x, 0], minlength=50).tolist() == expected.tolist()
    assert (np.bincount(pairs[labels == 0, 0], minlength=50) >= 1).all()


def test_split_is_deterministic_and_order_free() -> None:
    pairs = _pairs()
    a = split_per_user(pairs, seed=3)
    assert (split_per_user(pairs, seed=3) == a).all()
    assert (split_per_user(pairs, seed=4) != a).any()
    perm = np.random.default_rng(1).permutation(len(pairs))
    assert (split_per_user(pairs[perm], seed=3) == a[perm]).all()


def test_split_bad_ratios() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        split_per_user(_pairs(), (0.8, 0.1, 0.2))
    with pytest.raises(ConfigError, match="non-negative"):
        split_per_user(_pairs(), (1.1, -0.1, 0.0))
