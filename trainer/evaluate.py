"""Full-ranking evaluation (the MMRec protocol behind the papers' tables).

Every user with a non-empty target set is scored against all items; the user's training
items are masked to -inf; metrics are averaged over those users. Ranking metrics are pure
numpy functions of a hit matrix, tested on hand-ranked examples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch


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


# -- scoring ------------------------------------------------------------------------------
def csr_from_pairs(pairs: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    m = sp.csr_matrix(
        (np.ones(len(pairs), np.float32), (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items)
    )
    m.sum_duplicates()
    return m


def topk_items(
    queries: torch.Tensor,
    keys: torch.Tensor,
    users: np.ndarray,
    mask: sp.csr_matrix,
    k: int,
    batch: int = 2048,
) -> np.ndarray:
    """Top-k items of q_u . v_i for ``users``, with the items of ``mask`` rows excluded.

    queries [n_users, D], keys [n_items, D] -> int64 [len(users), k].
    """
    out = np.empty((len(users), k), dtype=np.int64)
    keys_t = keys.T.contiguous()
    for s in range(0, len(users), batch):
        ub = users[s : s + batch]
        scores = queries[torch.from_numpy(ub).to(queries.device)] @ keys_t  # [b, n_items]
        sub = mask[ub]
        rows = np.repeat(np.arange(len(ub)), np.diff(sub.indptr))
        r = torch.from_numpy(rows).to(scores.device)
        c = torch.from_numpy(sub.indices.astype(np.int64)).to(scores.device)
        scores[r, c] = float("-inf")
        out[s : s + batch] = torch.topk(scores, k, dim=1).indices.cpu().numpy()
    return out


def evaluate_vectors(
    queries: torch.Tensor,
    keys: torch.Tensor,
    train: sp.csr_matrix,
    target: sp.csr_matrix,
    ks: Sequence[int] = (10, 20, 50),
    batch: int = 2048,
) -> dict[str, float]:
    """Metrics of the scores Q K^T against ``target`` rows, training items masked."""
    n_rel_all = np.diff(target.indptr)
    users = np.flatnonzero(n_rel_all > 0)
    kmax = min(max(ks), keys.shape[0])
    top = topk_items(queries, keys, users, train, kmax, batch)
    tgt = target[users]
    # hit lookup without Python loops: sorted keys of (row, item)
    rows = np.repeat(np.arange(len(users)), np.diff(tgt.indptr))
    rel_keys = rows.astype(np.int64) * keys.shape[0] + tgt.indices
    rel_keys.sort()
    cand = np.arange(len(users))[:, None] * keys.shape[0] + top
    pos = np.searchsorted(rel_keys, cand)
    hits = rel_keys[np.minimum(pos, len(rel_keys) - 1)] == cand
    metrics = ranking_metrics(hits, n_rel_all[users], [k for k in ks if k <= kmax])
    metrics["users"] = float(len(users))
    return metrics


def fold_vectors(
    user_emb: torch.Tensor, item_emb: torch.Tensor, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """ALGORITHMS.md 1.8: q_u = concat_m e_u^m, v_i = concat_m w_i^m e_i^m."""
    q = user_emb.reshape(user_emb.shape[0], -1)
    v = item_emb if weights is None else item_emb * weights[:, :, None]
    return q, v.reshape(item_emb.shape[0], -1)
