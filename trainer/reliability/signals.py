"""Training-free reliability signals per (item, modality): higher = content agrees with behaviour.

Each function returns one float64 value per item for one modality; NaN where the item has no
evidence (no training interactions). Shapes: I = items, U = users, d = feature size.

- ``agreement``: the audit's content-collaborative agreement (trainer/audit.py): Pearson over the
  other items between the item's collaborative cosine row and its content cosine row.
- ``profile_rank``: a training-free version of MARGO's BPR rating gap (Eq. 5): for each training
  pair (u, i), where item i's content ranks among all items under user u's content profile built
  from u's OTHER training items (leave-one-out), as a fraction in [0, 1]; averaged per item. A
  swapped image/title sits where u's other items are not, so its items rank low.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from trainer.audit import content_consistency


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def agreement(item_users: sp.spmatrix, features: np.ndarray, *, chunk: int = 1024) -> np.ndarray:
    """The audit's consistency (Pearson of collaborative and content cosine rows), [I]."""
    return content_consistency(item_users, features, chunk=chunk)


def profile_rank(
    train: np.ndarray, n_users: int, features: np.ndarray, *, chunk: int = 2048
) -> np.ndarray:
    """Mean leave-one-out rank fraction of each item under its users' content profiles, [I].

    For a training pair (u, i) with u's training items N(u) (|N(u)| >= 2):
        p_u^{-i} = sum_{j in N(u), j != i} f_j            (f: unit rows)
        rank_ui  = |{k != i : p_u^{-i} . f_k < p_u^{-i} . f_i}| / (I - 1)
    and the item's value is the mean of rank_ui over its users; NaN for an item without a
    user that has another training item. 0.5 = content no better than a random item.
    """
    f = unit_rows(features)
    n_items = f.shape[0]
    users, items = train[:, 0], train[:, 1]
    r = sp.csr_matrix((np.ones(len(train)), (users, items)), shape=(n_users, n_items))
    r.data[:] = 1.0  # duplicate pairs count once
    sums = r @ f  # [U, d]
    deg = np.asarray(r.sum(1)).ravel()
    keep = deg[users] >= 2
    users, items = users[keep], items[keep]
    total = np.zeros(n_items)
    count = np.zeros(n_items)
    for start in range(0, len(users), chunk):
        u, i = users[start : start + chunk], items[start : start + chunk]
        prof = sums[u] - f[i]  # [c, d] the profile without item i
        s = prof @ f.T  # [c, I]
        own = s[np.arange(len(i)), i]
        below = (s < own[:, None]).sum(1)  # item i itself is never below itself
        np.add.at(total, i, below / max(n_items - 1, 1))
        np.add.at(count, i, 1.0)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
