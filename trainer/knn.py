"""Torch-free item-item kNN graphs (ALGORITHMS.md D5), shared by training and fold-in.

Training builds the frozen item-item graph from these functions (``trainer.graphs`` imports
them back); the API process folds new items in against the same graph rule
(``trainer.foldin``) and must never import torch, so this module is numpy/scipy only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Similarity blocks are bounded to this many float32 entries (128 MiB), so a 100k-item
# catalogue is searched in blocks of ~335 rows instead of materialising n x n.
_BLOCK_ENTRIES = 1 << 25


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by max(||row||, eps) as float32 (torch's F.normalize rule: zero rows stay 0)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.float32(eps))


def top_k_neighbours(
    queries: np.ndarray,
    catalogue: np.ndarray,
    k: int,
    *,
    self_offset: int | None = None,
    chunk: int | None = None,
) -> np.ndarray:
    """Indices [n_q, k] of the k catalogue rows with the largest dot product per query row.

    Inputs are expected L2-normalised (cosine similarity). With ``self_offset`` the query row
    ``j`` is catalogue row ``self_offset + j`` and is forced into its own neighbour list (as
    D5 does, so even an all-zero feature row picks itself). Rows within a list are ordered by
    decreasing similarity, ties by lower index. Chunked so memory stays ~128 MiB per block.
    """
    q = np.asarray(queries, dtype=np.float32)
    c = np.asarray(catalogue, dtype=np.float32)
    n_q, n_c = q.shape[0], c.shape[0]
    if not 0 < k <= n_c:
        raise ValueError(f"k must be in [1, {n_c}], got {k}")
    step = chunk or max(1, min(2048, _BLOCK_ENTRIES // max(n_c, 1)))
    out = np.empty((n_q, k), dtype=np.int64)
    c_t = np.ascontiguousarray(c.T)
    for start in range(0, n_q, step):
        sim = q[start : start + step] @ c_t
        rows = np.arange(sim.shape[0])
        if self_offset is not None:
            sim[rows, self_offset + start + rows] = np.inf
        if k < n_c:
            part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n_c), (sim.shape[0], n_c)).copy()
        vals = np.take_along_axis(sim, part, axis=1)
        # order by similarity then index, so equal-similarity ties resolve deterministically
        order = np.lexsort((part, -vals), axis=1)
        out[start : start + step] = np.take_along_axis(part, order, axis=1)
    return out


def nearest_rows(
    queries: np.ndarray, catalogue: np.ndarray, k: int, *, block_entries: int = _BLOCK_ENTRIES
) -> tuple[np.ndarray, np.ndarray]:
    """(rows [n_q, k'], similarity [n_q, k']) of the k' = min(k, n_c) catalogue rows with the
    largest dot product per query, most similar first (ties: lower row first).

    Streams the catalogue in row blocks of about ``block_entries / n_q`` rows, converting
    each to float32 on the fly (a float16 catalogue is never copied whole) and merging each
    block's candidates into the running top k: one query against 100k rows holds one block.
    """
    q = np.asarray(queries, dtype=np.float32)
    n_q, n_c = q.shape[0], catalogue.shape[0]
    k = min(k, n_c)
    best_i = np.empty((n_q, 0), dtype=np.int64)
    best_v = np.empty((n_q, 0), dtype=np.float32)
    if k <= 0:
        return best_i, best_v
    step = max(k, block_entries // max(n_q, 1))
    for start in range(0, n_c, step):
        block = np.asarray(catalogue[start : start + step], dtype=np.float32)
        ids = np.broadcast_to(np.arange(start, start + block.shape[0]), (n_q, block.shape[0]))
        vals = np.concatenate([best_v, q @ block.T], axis=1)
        cand = np.concatenate([best_i, ids], axis=1)
        if vals.shape[1] > k:
            part = np.argpartition(-vals, k - 1, axis=1)[:, :k]
            vals, cand = np.take_along_axis(vals, part, 1), np.take_along_axis(cand, part, 1)
        best_v, best_i = vals, cand
    order = np.lexsort((best_i, -best_v), axis=1)
    return np.take_along_axis(best_i, order, 1), np.take_along_axis(best_v, order, 1)


def knn_graph(features: np.ndarray, k: int, chunk: int | None = None) -> sp.csr_matrix:
    """D5: binary top-k cosine graph of the raw features, normalised to S / k.

    As in DRAGON the item itself is among its k neighbours, every row has exactly k entries
    and the symmetric normalisation D^-1/2 S D^-1/2 of the row-degree is S / k.
    """
    x = l2_normalize(features)
    n = x.shape[0]
    k = min(k, n)
    cols = top_k_neighbours(x, x, k, self_offset=0, chunk=chunk)
    rows = np.repeat(np.arange(n), k)
    vals = np.full(rows.size, 1.0 / k, dtype=np.float32)
    return sp.csr_matrix((vals, (rows, cols.ravel())), shape=(n, n))


def mixed_item_graph(graphs: dict[str, sp.csr_matrix], weights: dict[str, float]) -> sp.csr_matrix:
    """D5: S = sum_m a_m S^m."""
    total = None
    for name, g in graphs.items():
        term = g * np.float32(weights[name])
        total = term if total is None else total + term
    assert total is not None
    return total.tocsr().astype(np.float32)


def default_graph_weights(names: list[str]) -> dict[str, float]:
    """DRAGON mixes 0.1 image + 0.9 text; generalised: 'image' gets 0.1, the rest share 0.9."""
    if "image" in names and len(names) > 1:
        rest = [n for n in names if n != "image"]
        return {"image": 0.1, **{n: 0.9 / len(rest) for n in rest}}
    return {n: 1.0 / len(names) for n in names}


def channel_graph_mixing(
    modalities: list[str],
    channels: list[str],
    *,
    per_channel: bool,
    weights: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """The a_m of each channel's item graph S = sum_m a_m S^m, as the backbones are built.

    Per-channel graphs: a content channel uses its own modality's graph, the id channel the
    default mix; otherwise every channel shares one mix (``weights`` or the default).
    """
    default = default_graph_weights(modalities)
    if per_channel:
        return {c: ({c: 1.0} if c in modalities else dict(default)) for c in channels}
    mix = {m: float(w) for m, w in (weights or default).items()}
    return {c: dict(mix) for c in channels}


# -- kNN search with a low-rank prefilter (fold-in of new items in large catalogues) ---------
SEARCH_RANK = 64  # r: features wider than this get a rank-r prefilter in the bundle


def reduced_basis(x: np.ndarray, rank: int, *, seed: int = 0, power: int = 1) -> np.ndarray:
    """An orthonormal basis B [f, r] of the top-r row space of ``x`` [n, f] (randomised range
    finder with ``power`` iterations; Halko, Martinsson & Tropp 2011)."""
    x = np.asarray(x, np.float32)
    rng = np.random.default_rng(seed)
    omega = rng.standard_normal((x.shape[1], rank)).astype(np.float32)
    basis = np.linalg.qr(x.T @ (x @ omega))[0]
    for _ in range(power):
        basis = np.linalg.qr(x.T @ (x @ basis))[0]
    return np.ascontiguousarray(basis, np.float32)


def search_arrays(rows: np.ndarray, rank: int = SEARCH_RANK) -> dict[str, np.ndarray] | None:
    """The prefilter of ``rows`` (as they are searched): basis B [f, r] and low = rows B
    [n, r] float32; None when f <= r (a full scan is as cheap)."""
    x = np.asarray(rows, np.float32)
    if x.shape[1] <= rank:
        return None
    basis = reduced_basis(x, rank)
    return {"basis": basis, "low": np.ascontiguousarray(x @ basis, np.float32)}


def nearest_rows_prefiltered(
    queries: np.ndarray,
    rows: np.ndarray,
    k: int,
    *,
    basis: np.ndarray,
    low: np.ndarray,
    n_candidates: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """``nearest_rows`` approximately: the ``n_candidates`` rows nearest in the rank-r space
    (q B) . (x B) are re-ranked by their exact similarity. Approximate: a true neighbour
    whose similarity lies mostly outside B's span can be missed (its replacement is then the
    next most similar candidate); the result is exact when n_candidates >= n_rows.
    """
    q = np.asarray(queries, np.float32)
    n_c = rows.shape[0]
    k = min(k, n_c)
    n_cand = min(n_c, max(n_candidates, k))
    if k <= 0:
        return np.empty((q.shape[0], 0), np.int64), np.empty((q.shape[0], 0), np.float32)
    cand, _ = nearest_rows(q @ basis, low, n_cand)  # [n_q, n_cand]
    exact = np.empty(cand.shape, np.float32)
    step = max(1, _BLOCK_ENTRIES // (n_cand * q.shape[1]))  # bound the gathered rows' memory
    for s in range(0, q.shape[0], step):
        c = cand[s : s + step]
        gathered = np.asarray(rows[c.ravel()], np.float32).reshape(*c.shape, -1)
        exact[s : s + step] = np.einsum("jcf,jf->jc", gathered, q[s : s + step])
    order = np.lexsort((cand, -exact), axis=1)[:, :k]
    return np.take_along_axis(cand, order, 1), np.take_along_axis(exact, order, 1)
