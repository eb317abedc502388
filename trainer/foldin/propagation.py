"""Fold-in through the model's own propagation (FREEDOM backbone; numpy only).

FREEDOM's user embedding is F3's layer mean over the full graph A_hat (a_ui = 1/sqrt(d_u d_i)),
which splits by node (trainer/models/freedom.py exports the parts, trainer/bundle_foldin.py):

    e_u = s_u + sum_{i in N(u)} m_i / sqrt(|N(u)|),   s_u = P_u / (L+1)  (foldin_user_self)
    m_i = sum_{l<L} (A^l X0)_i / (sqrt(d_i) (L+1))                       (foldin_user_msg)

so a user with interactions the model did not train on gets what the model's forward pass
gives them with those edges added, the items held fixed:

    q = s_u + sum_n c_n m_n / sqrt(sum_n c_n)

(c: confidences, 1 each by default: exactly the forward pass; s_u = 0 for a user the model
never trained on, whose P is unknown). A known user's fold with exactly their training items
is their trained vector. A folded-in item (no catalogue row, only its fused vector v) sends
m = v T, T the ridge map v_i -> m_i fit on the catalogue (lam relative to tr(V^T V) / D).

A new item j lacks what its edges and id embedding give a trained item, r_i = Z_i - X_i /
(L+1) (foldin_item_edges); items.py's ``placement="edges"`` adds, per channel c, the graph's
own average of its content neighbours' r (the k - 1 nearest per modality, the kNN the item
graph S uses, mixed as S^c mixes the modalities):

    e_j^c = (model step)_j^c + sum_m a_m^c / sum_m a_m^c  mean_{n in N_m(j)} r_n^c

Measured (mlsmall-mmrec and synthetic, default margo + id on FREEDOM): bench/freshness.py and
bench/results/freshness.md.
"""

from __future__ import annotations

import numpy as np

from trainer.bundle import ModelBundle
from trainer.bundle_foldin import ITEM_EDGES, PROPAGATION, USER_MSG, USER_SELF

MAP_LAM = 1.0  # ridge of the folded-item map v -> m, relative to tr(V^T V) / D


def has_propagation(bundle: ModelBundle) -> bool:
    """Whether the bundle carries the propagation parts (a FREEDOM model, format 3)."""
    return all(name in bundle.arrays for name in PROPAGATION)


class UserPropagation:
    """q = s_u + sum c m / sqrt(sum c) for one bundle (its arrays, and the map for folded
    items, built once)."""

    def __init__(self, bundle: ModelBundle, vectors: np.ndarray, *, lam: float = MAP_LAM):
        arrays = bundle.arrays
        self.self_part = np.asarray(arrays[USER_SELF], np.float32).reshape(bundle.n_users, -1)
        self.msg = np.asarray(arrays[USER_MSG], np.float32).reshape(bundle.n_items, -1)
        self._vectors, self._lam = vectors, lam
        self._map: np.ndarray | None = None  # built on the first folded item

    def vector_map(self) -> np.ndarray:
        """T [D, D] = (V^T V + lam tr(V^T V)/D I)^-1 V^T M over the catalogue."""
        if self._map is None:
            dim = self.msg.shape[1]
            gram, cross = np.zeros((dim, dim)), np.zeros((dim, dim))
            for start in range(0, len(self.msg), 8192):  # float64 sums by blocks
                v = self._vectors[start : start + 8192].astype(np.float64)
                gram += v.T @ v
                cross += v.T @ self.msg[start : start + 8192].astype(np.float64)
            ridge = self._lam * max(float(np.trace(gram)) / dim, 1e-12)
            self._map = np.linalg.solve(gram + ridge * np.eye(dim), cross)
        return self._map

    def messages(self, rows: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
        """m of the user's items [n, D] float64: catalogue rows first, then folded vectors."""
        msg = self.msg[rows].astype(np.float64)
        if extra is not None and len(extra):
            msg = np.concatenate([msg, np.asarray(extra, np.float64) @ self.vector_map()])
        return msg

    def fold(self, msg: np.ndarray, c: np.ndarray, user: int | None) -> np.ndarray:
        """q [D] float64 from the items' messages, confidences and the user's row (or None)."""
        total = float(c.sum())
        q = c @ msg / np.sqrt(total) if total > 0 else np.zeros(msg.shape[1])
        return q if user is None else q + self.self_part[user]


def impute_edges(
    edges: np.ndarray, neighbours: list[np.ndarray], mix: np.ndarray
) -> np.ndarray:
    """[n, M, d]: per channel c, sum_m a_m^c / sum_m a_m^c times the mean of r over the new
    items' neighbours in modality m. edges r [I, M, d]; neighbours[m] [n, k-1] catalogue rows;
    mix [M, modalities] the graph mixing a (a row without mixing takes the modalities' mean)."""
    mix = np.asarray(mix, np.float64)
    total = mix.sum(1, keepdims=True)
    share = np.where(total > 0, mix / np.where(total > 0, total, 1.0), 1.0 / mix.shape[1])
    n = len(neighbours[0])
    out = np.zeros((n, *edges.shape[1:]))
    for j, rows in enumerate(neighbours):
        if rows.shape[1] == 0:  # a one-item catalogue: no neighbours, nothing to impute
            continue
        mean = edges[rows].astype(np.float64).mean(axis=1)  # [n, M, d]
        out += share[None, :, j, None] * mean
    return out.astype(np.float32)


def item_edges(bundle: ModelBundle) -> np.ndarray | None:
    """The catalogue's r [I, M, d], or None for a bundle without propagation parts."""
    return np.asarray(bundle.arrays[ITEM_EDGES], np.float32) if has_propagation(bundle) else None
