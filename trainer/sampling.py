"""BPR triplet sampling: every training pair once per epoch, ``n_negatives`` uniform negatives
each (default one)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class TripletSampler:
    """Yields (users, positives, negatives) int64 batches; negatives are never training items.

    Negatives are drawn for the whole epoch at once and only the collisions are redrawn, so the
    cost is a few vectorised passes, not a Python loop per triplet.

    With ``n_negatives`` = n > 1 every pair is repeated n times, each copy with its own negative,
    and a batch holds ``batch_size`` pairs (n * batch_size triplets): the batch mean of any
    per-triplet loss is then the mean over pairs of the mean over their n negatives, and a step
    still costs one graph propagation (which dominates the graph models' step). n = 1 draws
    exactly what the one-negative sampler drew (same stream).
    """

    def __init__(self, train: np.ndarray, n_items: int, seed: int, n_negatives: int = 1) -> None:
        if n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
        self.train = np.ascontiguousarray(train, dtype=np.int64)
        self.n_items = n_items
        self.n_negatives = n_negatives
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
        n = self.n_negatives
        # copies of a pair are adjacent, so a batch of pairs is one contiguous slice of triplets
        users, pos = np.repeat(self.train[perm, 0], n), np.repeat(self.train[perm, 1], n)
        neg = self.negatives(users)
        step = batch_size * n
        for s in range(0, len(users), step):
            yield users[s : s + step], pos[s : s + step], neg[s : s + step]

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self.train) // batch_size)
