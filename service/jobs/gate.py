"""The activation gate: both models scored on the same snapshot, numpy only.

A bundle is evaluated the way it serves: users it knows get ``q_u . v_i`` over the items it
knows (items it does not know cannot be recommended by it: -inf), users it does not know get
its popularity order. The snapshot's training pairs are masked, its validation pairs are the
targets (the MMRec full-ranking protocol of trainer/evaluate.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.bundle import ModelBundle
from trainer.data.dataset import Dataset
from trainer.evaluate import csr_from_pairs, ranking_metrics

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
    users = np.flatnonzero(np.diff(target.indptr) > 0)
    if users.size == 0:
        return {f"recall@{k}": 0.0 for k in ks} | {"users": 0.0}
    # dataset row -> bundle row (-1: unknown to the bundle)
    item_map = np.array([_index(bundle.item_index(i)) for i in data.item_ids], dtype=np.int64)
    user_map = np.array([_index(bundle.user_index(u)) for u in data.user_ids], dtype=np.int64)
    known_items = item_map >= 0
    queries = bundle.query_vectors()
    keys = bundle.item_vectors()[item_map[known_items]]  # [n_known, D]
    popularity = np.full(data.n_items, -np.inf, dtype=np.float32)
    popularity[known_items] = bundle.arrays["item_popularity"][item_map[known_items]]
    kmax = min(max(ks), data.n_items)
    top = np.empty((len(users), kmax), dtype=np.int64)
    for s in range(0, len(users), EVAL_BATCH_USERS):
        ub = users[s : s + EVAL_BATCH_USERS]
        scores = np.full((len(ub), data.n_items), -np.inf, dtype=np.float32)
        rows = user_map[ub]
        known = rows >= 0
        scores[np.ix_(known, known_items)] = queries[rows[known]] @ keys.T
        scores[~known] = popularity
        sub = train[ub]
        scores[np.repeat(np.arange(len(ub)), np.diff(sub.indptr)), sub.indices] = -np.inf
        part = np.argpartition(-scores, kmax - 1, axis=1)[:, :kmax]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
        top[s : s + len(ub)] = np.take_along_axis(part, order, 1)
    tgt = target[users]
    hits = np.zeros(top.shape, dtype=bool)
    for n in range(len(users)):
        rel = tgt.indices[tgt.indptr[n] : tgt.indptr[n + 1]]
        hits[n] = np.isin(top[n], rel)
    metrics = ranking_metrics(hits, np.diff(tgt.indptr), [k for k in ks if k <= kmax])
    metrics["users"] = float(len(users))
    return metrics


def _index(value: int | None) -> int:
    return -1 if value is None else value
