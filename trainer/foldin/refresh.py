"""Graph refresh: FREEDOM's forward pass over the training graph plus new interactions, with
the trained parameters (numpy only; no training).

A user fold (users.py) holds every item fixed. The interactions a model did not train on
also change the items they touch: F3 propagates over the user-item graph both ways, so with
the new edges an item's Z_i gains its new users' preferences, and through it every user of
that item moves. With the bundle's parts (trainer/bundle_foldin.py: P_u / (L+1), X_I, r):

    X0   = [P ; X_I],  A' = D'^-1/2 A' D'^-1/2 of the training pairs plus the new ones
    Z'   = 1/(L+1) sum_{l<=L} A'^l X0                                  (F3 on A')
    e_u' = Z'_u,   e_i' = e_i - Z_i + Z'_i,  Z_i = r_i + X_i^content / (L+1)
    (F4's item hop S X_I does not depend on the user-item graph, so it is kept)

L is read from the fold-in record (self_scale = 1 / (L+1)). With no new pairs it returns the
bundle's own embeddings. The training pairs are the caller's (a bundle records every
interaction of its dataset as ``seen``, not which of them it trained on).

Measured (bench/freshness.py's returning users, all their held-back rows posted at once,
test R@20, mean of seeds 0-2): synthetic 0.380 vs stale 0.343 and retrained 0.388 (82% of
the gap, mean of the seeds' shares; the user fold alone 0.350, 16%), mlsmall 0.295 vs 0.293
and 0.312 (4%; the user fold 1%): there the retrained model's lead is in parameters trained
on the added rows, not in the graph.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from trainer.bundle import ModelBundle
from trainer.bundle_foldin import (
    FOLDIN_STATE,
    ITEM_EDGES,
    USER_SELF,
    FoldInInputError,
    FoldInUnavailable,
    fold_in_info,
)
from trainer.foldin.propagation import has_propagation


def normalized_graph(n_users: int, n_items: int, pairs: np.ndarray) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 of the bipartite graph of distinct (user, item) pairs, users first
    (trainer/graphs.normalized_adjacency's rule, here without torch)."""
    u = pairs[:, 0].astype(np.int64)
    i = pairs[:, 1].astype(np.int64) + n_users
    n = n_users + n_items
    a = sp.csr_matrix((np.ones(2 * len(u)), (np.r_[u, i], np.r_[i, u])), shape=(n, n))
    a.sum_duplicates()
    a.data[:] = 1.0
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1.0)), 0.0)
    return (sp.diags(inv) @ a @ sp.diags(inv)).tocsr()


def refresh(
    bundle: ModelBundle, train_pairs: np.ndarray, new_pairs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(user_emb' [U, M, d], item_emb' [I, M, d]) float32 after adding ``new_pairs`` (int
    [n, 2] of bundle rows: user, item) to the graph of ``train_pairs`` (the same, the pairs
    the model trained on). Raises FoldInUnavailable without the propagation parts."""
    if not has_propagation(bundle):
        raise FoldInUnavailable(f"{bundle.path}: graph refresh needs the propagation parts "
                                "(a FREEDOM model exported with this version)")
    info = fold_in_info(bundle.manifest, bundle.path)
    layers = int(round(1.0 / info.self_scale)) - 1
    n_u, n_i = bundle.n_users, bundle.n_items
    pairs = np.concatenate([np.asarray(train_pairs, np.int64).reshape(-1, 2),
                            np.asarray(new_pairs, np.int64).reshape(-1, 2)])
    if len(pairs) and ((pairs.min(0) < 0).any() or (pairs.max(0) >= [n_u, n_i]).any()):
        raise FoldInInputError(f"pairs must hold user rows < {n_u} and item rows < {n_i}")
    arrays = bundle.arrays
    shape = arrays["item_emb"].shape[1:]
    state = np.asarray(arrays[FOLDIN_STATE], np.float64)
    x = np.vstack([np.asarray(arrays[USER_SELF], np.float64).reshape(n_u, -1) * (layers + 1),
                   state.reshape(n_i, -1)])
    adj = normalized_graph(n_u, n_i, pairs)
    z = x.copy()
    for _ in range(layers):  # F3 on the new graph
        x = adj @ x
        z += x
    z /= layers + 1
    content = state.copy()
    if "id" in bundle.channels:
        content[:, bundle.channels.index("id")] = 0.0
    z_old = np.asarray(arrays[ITEM_EDGES], np.float64) + content / (layers + 1)
    items = np.asarray(arrays["item_emb"], np.float64) - z_old + z[n_u:].reshape(n_i, *shape)
    return z[:n_u].reshape(n_u, *shape).astype(np.float32), items.astype(np.float32)
