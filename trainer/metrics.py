"""Full-ranking evaluation (the MMRec protocol behind the papers' tables), numpy only.

Every user with a non-empty target set is scored against all items; the items of the user's
``mask`` row (the training items) are set to -inf; the top-k is taken and the metrics are
averaged over those users. Implemented once for the trainer's evaluation, ``margo evaluate``
and the retrain gate; torch-free, so the API process and the gate can use it.

The pieces, each usable alone:

* ``recall_at_k`` ... ``map_at_k``, ``ranking_metrics``: metrics of a hit matrix;
* ``topk_rows``: the k best columns of a score block, best first, ties by lower column;
* ``full_ranking_topk``: batched scoring + masking + top-k for a ``ScoreFn``;
* ``hit_matrix`` and ``topk_metrics``: metrics of ranked lists against targets;
* ``evaluate_vectors`` / ``evaluate_scores``: the whole protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

DEFAULT_KS = (10, 20, 50)
EVAL_BATCH_USERS = 2048  # users scored per block: memory ~ batch x items x 4 B

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""users [b] -> float32 scores [b, n_items] (a fresh array: masking writes into it)."""


# -- metrics on a hit matrix ------------------------------------------------------------------
# hits: bool [U, K] (hits[u, r] = the item at rank r+1 is relevant); n_rel: int [U] (> 0)
def recall_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """|top-k ∩ T_u| / |T_u|."""
    return hits[:, :k].sum(1) / n_rel


def precision_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """|top-k ∩ T_u| / k."""
    return hits[:, :k].sum(1) / k


def ndcg_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """DCG / IDCG with binary gains 1 / log2(rank + 1)."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * disc).sum(1)
    ideal = np.cumsum(disc)[np.minimum(n_rel, k) - 1]
    return dcg / ideal


def map_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """AP@k = sum_r P@r * rel_r / min(|T_u|, k)."""
    h = hits[:, :k].astype(np.float64)
    prec = np.cumsum(h, 1) / np.arange(1, k + 1)
    return (prec * h).sum(1) / np.minimum(n_rel, k)


METRICS = {"recall": recall_at_k, "ndcg": ndcg_at_k, "precision": precision_at_k, "map": map_at_k}


def ranking_metrics(hits: np.ndarray, n_rel: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Mean of every metric at every k, keys like 'recall@20'."""
    return {
        f"{name}@{k}": float(fn(hits, n_rel, k).mean()) for k in ks for name, fn in METRICS.items()
    }


# -- interactions as sparse rows ---------------------------------------------------------------
def csr_from_pairs(pairs: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """(user, item) pairs [n, 2] -> a 0/1 CSR matrix [n_users, n_items] (duplicates merged)."""
    m = sp.csr_matrix(
        (np.ones(len(pairs), np.float32), (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items)
    )
    m.sum_duplicates()
    return m


def users_with_targets(target: sp.csr_matrix) -> np.ndarray:
    """Rows with at least one target item: the users the metrics average over."""
    return np.flatnonzero(np.diff(target.indptr) > 0)


# -- ranking -----------------------------------------------------------------------------------
def mask_rows(scores: np.ndarray, users: np.ndarray, mask: sp.csr_matrix) -> None:
    """Set ``scores[b, j]`` to -inf for every item j in ``mask`` row ``users[b]`` (in place)."""
    sub = mask[users]
    scores[np.repeat(np.arange(len(users)), np.diff(sub.indptr)), sub.indices] = -np.inf


def topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest columns of each row, best first, equal scores by lower column (the
    first k of a stable descending sort).

    Selects by value first (the k-th largest score per row, then the columns at or above
    it), which is faster than ``argpartition`` on wide rows; only those columns are sorted.
    """
    n_rows, n_cols = scores.shape
    if k >= n_cols:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    kth = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k]  # k-th largest per row
    rows, cols = np.nonzero(scores >= kth[:, None])  # k or more per row (ties at the k-th)
    order = np.lexsort((cols, -scores[rows, cols], rows))  # by row, best first, then column
    rows, cols = rows[order], cols[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, np.arange(n_rows))[rows]
    return cols[rank < k].reshape(n_rows, k)


def full_ranking_topk(
    score_fn: ScoreFn,
    users: np.ndarray,
    mask: sp.csr_matrix,
    k: int,
    batch: int = EVAL_BATCH_USERS,
) -> np.ndarray:
    """Top-k items of every user in ``users`` with the ``mask`` row's items excluded.

    int64 [len(users), k], in ``users`` order, best first.
    """
    out = np.empty((len(users), k), dtype=np.int64)
    for s in range(0, len(users), batch):
        ub = users[s : s + batch]
        scores = score_fn(ub)
        mask_rows(scores, ub, mask)
        out[s : s + len(ub)] = topk_rows(scores, k)
    return out


def hit_matrix(top: np.ndarray, users: np.ndarray, target: sp.csr_matrix) -> np.ndarray:
    """hits[n, r] = item ``top[n, r]`` is in ``target`` row ``users[n]``; bool like ``top``."""
    tgt = target[users]
    n_items = target.shape[1]
    # membership without Python loops: sorted keys (row * n_items + item)
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(tgt.indptr))
    rel_keys = np.sort(rows * n_items + tgt.indices)
    if rel_keys.size == 0:
        return np.zeros(top.shape, dtype=bool)
    cand = np.arange(len(users), dtype=np.int64)[:, None] * n_items + top
    pos = np.searchsorted(rel_keys, cand)
    return rel_keys[np.minimum(pos, len(rel_keys) - 1)] == cand


def topk_metrics(
    top: np.ndarray, users: np.ndarray, target: sp.csr_matrix, ks: Sequence[int]
) -> dict[str, float]:
    """Metrics of the ranked lists ``top`` (row n: user ``users[n]``) against ``target``.

    Every k in ``ks`` up to ``top.shape[1]`` is reported, plus ``users`` (how many averaged).
    """
    hits = hit_matrix(top, users, target)
    n_rel = np.diff(target.indptr)[users]
    metrics = ranking_metrics(hits, n_rel, [k for k in ks if k <= top.shape[1]])
    metrics["users"] = float(len(users))
    return metrics


# -- the whole protocol ------------------------------------------------------------------------
def evaluate_scores(
    score_fn: ScoreFn,
    n_items: int,
    train: sp.csr_matrix,
    target: sp.csr_matrix,
    ks: Sequence[int] = DEFAULT_KS,
    batch: int = EVAL_BATCH_USERS,
) -> dict[str, float]:
    """Metrics of ``score_fn``'s full ranking against ``target`` rows, ``train`` items masked.

    With no user to evaluate, every metric is 0.0 and ``users`` is 0.
    """
    users = users_with_targets(target)
    kmax = min(max(ks), n_items)
    if users.size == 0:
        return {f"{n}@{k}": 0.0 for k in ks if k <= kmax for n in METRICS} | {"users": 0.0}
    top = full_ranking_topk(score_fn, users, train, kmax, batch)
    return topk_metrics(top, users, target, ks)


def evaluate_vectors(
    queries: np.ndarray,
    keys: np.ndarray,
    train: sp.csr_matrix,
    target: sp.csr_matrix,
    ks: Sequence[int] = DEFAULT_KS,
    batch: int = EVAL_BATCH_USERS,
) -> dict[str, float]:
    """Metrics of the scores Q K^T (queries [U, D], keys [I, D]) with ``train`` masked."""
    keys_t = np.ascontiguousarray(keys.T)

    def score_fn(users: np.ndarray) -> np.ndarray:
        return queries[users] @ keys_t

    return evaluate_scores(score_fn, keys.shape[0], train, target, ks, batch)
