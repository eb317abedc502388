"""Content audit: which items' modality content disagrees with who interacts with them?

A training-free check that complements MARGO's learned weights. For item i and modality m it
correlates two rows over all other items j:

    cf_ij  = cos(R_i, R_j)            R: the item's column of the binary training matrix
    fs_ij  = cos(f_i^m, f_j^m)        the raw modality features
    consistency_i^m = pearson_j!=i(cf_ij, fs_ij)

Content that belongs to another item (a swapped title, a wrong image) sits near the wrong
items in feature space, so its row stops tracking the collaborative row: low consistency.
REFERENCE-NUMBERS.md measures this check at ROC-AUC ~0.8 on mlsmall-mmrec with 20% of the
rows of one modality swapped, above what BPR-supervised weights reach there
(bench/results/reliability.md).

Cost: O(n_items^2 * (d_m + users per item)) in row chunks; memory O(chunk * n_items).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def content_consistency(
    item_users: sp.spmatrix,
    features: np.ndarray,
    *,
    chunk: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Pearson correlation per item between its collaborative and its content cosine rows.

    ``item_users``: [n_items, n_users] interactions (any non-negative weights); ``features``:
    [n_items, d]. The item itself is left out of both rows. Items whose row is constant (no
    interactions, an all-zero feature) get NaN: there is nothing to compare.
    """
    r = sp.csr_matrix(item_users, dtype=np.float64)
    n = r.shape[0]
    if features.shape[0] != n:
        raise ValueError(f"features have {features.shape[0]} rows, interactions {n} items")
    if n < 3:
        raise ValueError("an audit needs at least 3 items")
    r_norm = np.sqrt(np.asarray(r.multiply(r).sum(1)).ravel())
    r = sp.csr_matrix(sp.diags(1.0 / np.maximum(r_norm, 1e-12)) @ r)
    f = np.asarray(features, dtype=np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    rt = r.T.tocsr()
    out = np.empty(n)
    m = n - 1  # entries per row once the item itself is left out
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        a = np.asarray((r[start:stop] @ rt).todense())  # [c, n] collaborative cosine
        b = f[start:stop] @ f.T  # [c, n] content cosine
        idx = np.arange(stop - start)
        a_self, b_self = a[idx, idx + start], b[idx, idx + start]
        # row sums without the diagonal, then the centred second moments
        sa, sb = a.sum(1) - a_self, b.sum(1) - b_self
        saa = (a * a).sum(1) - a_self**2
        sbb = (b * b).sum(1) - b_self**2
        sab = (a * b).sum(1) - a_self * b_self
        cov = sab - sa * sb / m
        va, vb = saa - sa**2 / m, sbb - sb**2 / m
        with np.errstate(invalid="ignore", divide="ignore"):
            c = cov / np.sqrt(va * vb)
        c[(va <= 1e-18) | (vb <= 1e-18)] = np.nan
        out[start:stop] = c
        if progress is not None:
            progress(stop - start)
    return out
