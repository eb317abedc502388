"""The scoring identity (ALGORITHMS.md 1.8), implemented once, numpy only.

MARGO scores a user-item pair as a weighted sum of per-modality inner products (Eqs. 2-3)::

    y_ui = sum_m w_i^m (e_u^m . e_i^m) = q_u . v_i,
    q_u = concat_m e_u^m,    v_i = concat_m w_i^m e_i^m

so one inner product ranks (FAISS, full-ranking evaluation) and the per-modality blocks of
that product explain a score. Everything that folds embeddings into vectors or splits a
score into modality terms calls this module: the export check, the trainer's evaluation, the
bundle (and through it the service's index and the retrain gate) and the explanations.
Torch-free, so the API process can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def query_vectors(user_emb: np.ndarray) -> np.ndarray:
    """q_u = concat_m e_u^m: [U, M, d] -> [U, M*d] float32 (C-contiguous)."""
    return np.ascontiguousarray(user_emb.reshape(user_emb.shape[0], -1), dtype=np.float32)


def item_vectors(item_emb: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """v_i = concat_m w_i^m e_i^m: [I, M, d] x [I, M] -> [I, M*d] float32.

    ``weights`` None means unweighted fusion (every w_i^m = 1).
    """
    fused = item_emb if weights is None else item_emb * weights[:, :, None]
    return np.ascontiguousarray(fused.reshape(item_emb.shape[0], -1), dtype=np.float32)


def scores(user_emb: np.ndarray, item_emb: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """y = Q V^T [U, I], computed through the identity (float32)."""
    return query_vectors(user_emb) @ item_vectors(item_emb, weights).T


@dataclass(frozen=True)
class ModalityTerms:
    """One user's score of ``r`` items split by modality (float64).

    ``contribution[:, m]`` is block m of ``q_u . v_i`` (v_i as stored, float32), so the
    contributions add up to ``score`` exactly and equal ``weight * similarity`` to float32
    precision. ``share`` is each contribution over the sum of their absolute values (0 when
    every contribution is 0): signed, and its absolute values sum to 1.
    """

    score: np.ndarray  # [r]
    similarity: np.ndarray  # [r, M]  e_u^m . e_i^m
    weight: np.ndarray  # [r, M]  w_i^m
    contribution: np.ndarray  # [r, M]  q_u^m . v_i^m
    share: np.ndarray  # [r, M]

    @property
    def top_modality(self) -> np.ndarray:
        """Index of the largest contribution per item, [r]."""
        return np.argmax(self.contribution, axis=1)


def modality_terms(
    user_emb: np.ndarray, item_emb: np.ndarray, weights: np.ndarray, fused: np.ndarray
) -> ModalityTerms:
    """Per-modality terms of one user's scores.

    user_emb [M, d] (e_u), item_emb [r, M, d] (e_i of the items), weights [r, M] (w_i),
    fused [r, M*d] (the items' v_i as stored, e.g. the rows the index holds).
    """
    n_channels = user_emb.shape[0]
    user = user_emb.astype(np.float64)[:, :, None]  # (M, d, 1)
    # block m of q_u . v_i: q_u^m = e_u^m, so the query is user_emb itself
    blocks = fused.astype(np.float64).reshape(fused.shape[0], n_channels, -1)  # (r, M, d)
    contrib = np.matmul(blocks[:, :, None, :], user)[:, :, 0, 0]  # (r, M)
    items = item_emb.astype(np.float64)  # (r, M, d)
    sims = np.matmul(items[:, :, None, :], user)[:, :, 0, 0]  # (r, M)
    total = np.abs(contrib).sum(axis=1, keepdims=True)
    share = np.divide(contrib, total, out=np.zeros_like(contrib), where=total > 0)
    return ModalityTerms(
        score=contrib.sum(axis=1),
        similarity=sims,
        weight=weights.astype(np.float64),
        contribution=contrib,
        share=share,
    )
