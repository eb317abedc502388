"""Evaluation with torch at hand: training-time evaluation and ``margo evaluate``.

The protocol and the metrics are ``trainer/metrics.py`` (numpy, shared with ``margo evaluate``
and the retrain gate); the fold into q_u and v_i is ``trainer/scoring.py``. This module only
adds the torch fast path for the top-k: the scores Q V^T are computed and cut by torch (where
the model lives during training, a GPU), and the metrics are taken from the ranked lists by
``trainer.metrics.topk_metrics``. ``tests/trainer/test_evaluate.py`` checks that the fast path
ranks exactly like ``trainer.metrics.full_ranking_topk``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from trainer import metrics, scoring


def topk_items(
    queries: torch.Tensor,
    keys: torch.Tensor,
    users: np.ndarray,
    mask: sp.csr_matrix,
    k: int,
    batch: int = metrics.EVAL_BATCH_USERS,
) -> np.ndarray:
    """Top-k items of q_u . v_i for ``users``, with the items of ``mask`` rows excluded.

    queries [n_users, D], keys [n_items, D] -> int64 [len(users), k] (the torch twin of
    ``trainer.metrics.full_ranking_topk``).
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
    queries: np.ndarray,
    keys: np.ndarray,
    train: sp.csr_matrix,
    target: sp.csr_matrix,
    ks: Sequence[int] = metrics.DEFAULT_KS,
    batch: int = metrics.EVAL_BATCH_USERS,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """``trainer.metrics.evaluate_vectors`` with the top-k taken by torch on ``device``.

    Same result (tests/trainer/test_evaluate.py); about twice as fast on one CPU thread, as
    ``torch.topk`` beats numpy's ``argpartition`` on wide score rows.
    """
    users = metrics.users_with_targets(target)
    if users.size == 0:
        return metrics.evaluate_vectors(queries, keys, train, target, ks, batch)  # all zeros
    kmax = min(max(ks), keys.shape[0])
    q_t, v_t = torch.from_numpy(queries).to(device), torch.from_numpy(keys).to(device)
    top = topk_items(q_t, v_t, users, train, kmax, batch)
    return metrics.topk_metrics(top, users, target, ks)


@torch.no_grad()
def evaluate_embeddings(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    weights: torch.Tensor | None,
    train: sp.csr_matrix,
    target: sp.csr_matrix,
    ks: Sequence[int] = metrics.DEFAULT_KS,
    batch: int = metrics.EVAL_BATCH_USERS,
) -> dict[str, float]:
    """Metrics of a model's e_u^m [U, M, d], e_i^m [I, M, d] and w_i^m [I, M] (None: 1).

    The vectors are folded by ``trainer.scoring`` (numpy) and ranked on the embeddings'
    device.
    """
    q = scoring.query_vectors(user_emb.detach().cpu().numpy())
    w = None if weights is None else weights.detach().cpu().numpy()
    v = scoring.item_vectors(item_emb.detach().cpu().numpy(), w)
    return evaluate_vectors(q, v, train, target, ks, batch, device=user_emb.device)
