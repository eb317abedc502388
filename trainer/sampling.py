"""BPR triplet sampling: every training pair once per epoch, one uniform negative each."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class TripletSampler:
    """Yields (users, positives, negatives) int64 batches; negatives are never training items.

    Negatives are drawn for the whole epoch at once and only the collisions are redrawn, so the
    cost is a few vectorised passes, not a Python loop per triplet.
    """

    def __init__(self, train: np.ndarray, n_items: int, seed: int) -> None:
        self.train = np.ascontiguousarray(train, dtype=np.int64)
        self.n_items = n_items
        self.keys = np.unique(self.train[:, 0] * n_items + self.train[:, 1])
        self.rng = np.random.default_rng(seed)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        k = users * self.n_items + items
        pos = np.searchsorted(self.keys, k)
        return self.keys[np.minimum(pos, len(self.keys) - 1)] == k

    def negatives(self, users: np.ndarray, max_rounds: int = 50) -> np.ndarray:
        neg = self.rng.integers(0, self.n_items, size=users.shape[0])
        bad = np.flatnonzero(self.is_positive(users, neg))
        for _ in range(max_rounds):  # users who rated everything would loop forever: bounded
            if bad.size == 0:
                break
            neg[bad] = self.rng.integers(0, self.n_items, size=bad.size)
            bad = bad[self.is_positive(users[bad], neg[bad])]
        return neg

    def epoch(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        perm = self.rng.permutation(len(self.train))
        users, pos = self.train[perm, 0], self.train[perm, 1]
        neg = self.negatives(users)
        for s in range(0, len(perm), batch_size):
            yield users[s : s + batch_size], pos[s : s + batch_size], neg[s : s + batch_size]

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.train) // batch_size)
