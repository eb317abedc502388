"""The activation gate: both models scored on the same snapshot, numpy only.

A bundle is evaluated the way it serves: users it knows get ``q_u . v_i`` over the items it
knows (items it does not know cannot be recommended by it: -inf), users it does not know get
its popularity order. The snapshot's training pairs are masked, its validation pairs are the
targets (the MMRec full-ranking protocol of trainer/metrics.py, torch-free).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.bundle import ModelBundle
from trainer.data.dataset import Dataset
from trainer.metrics import csr_from_pairs, evaluate_scores

GATE_METRIC = "recall@20"
EVAL_BATCH_USERS = 1024


@dataclass
class GateDecision:
    new: float
    active: float | None  # None: no active model, the new one goes live
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.active is None or self.new >= (1.0 - self.tolerance) * self.active

    @property
    def threshold(self) -> float | None:
        return None if self.active is None else (1.0 - self.tolerance) * self.active

    def explain(self) -> str:
        if self.active is None:
            return f"validation {GATE_METRIC} {self.new:.4f}; no active model to compare with"
        verb = "passes" if self.passed else "fails"
        return (
            f"validation {GATE_METRIC} {self.new:.4f} vs active model {self.active:.4f} on the "
            f"same snapshot: {verb} the gate (needs >= {self.threshold:.4f}, tolerance "
            f"{self.tolerance:g})"
        )


def evaluate_bundle(bundle: ModelBundle, data: Dataset, ks: tuple[int, ...] = (20,)) -> dict:
    """Ranking metrics of ``bundle`` on ``data``'s validation pairs, training pairs masked."""
    target = csr_from_pairs(data.valid, data.n_users, data.n_items)
    train = csr_from_pairs(data.train, data.n_users, data.n_items)
    # dataset row -> bundle row (-1: unknown to the bundle)
    item_map = np.array([_index(bundle.item_index(i)) for i in data.item_ids], dtype=np.int64)
    user_map = np.array([_index(bundle.user_index(u)) for u in data.user_ids], dtype=np.int64)
    known_items = item_map >= 0
    queries = bundle.query_vectors()
    keys_t = np.ascontiguousarray(bundle.item_vectors()[item_map[known_items]].T)  # [D, n_known]
    popularity = np.full(data.n_items, -np.inf, dtype=np.float32)
    popularity[known_items] = bundle.arrays["item_popularity"][item_map[known_items]]

    def score_fn(users: np.ndarray) -> np.ndarray:
        """Scores as the bundle serves them: q_u . v_i, or popularity for unknown users."""
        scores = np.full((len(users), data.n_items), -np.inf, dtype=np.float32)
        rows = user_map[users]
        known = rows >= 0
        scores[np.ix_(known, known_items)] = queries[rows[known]] @ keys_t
        scores[~known] = popularity
        return scores

    return evaluate_scores(score_fn, data.n_items, train, target, ks, EVAL_BATCH_USERS)


def _index(value: int | None) -> int:
    return -1 if value is None else value
