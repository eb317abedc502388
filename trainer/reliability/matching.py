"""Does an item's content match its behaviour better than a random item's content would?

Two signals that sharpen the cross-modal consistency of oof.py where content is weak (short
titles, a genre vector) and interactions are dense (ml-latest-small):

- ``neighbour_mean``: the similarity-weighted mean content of an item's k most collaboratively
  similar OTHER items (cosine of interaction rows). Used as an extra input of the out-of-fold
  predictor: a title's words recur among its collaborative neighbours' titles (sequels, eras,
  languages) in ways a linear map of an SVD embedding does not capture.
- ``matching_llr``: a Gaussian log-likelihood ratio, out of fold, of "this content belongs to
  this item" against "this content is an unrelated item's". Per fold, the content is reduced to
  its top principal components (fit on the other folds), each whitened to unit variance; a
  ridge predicts them from the inputs; with residual variances s_k^2 (GCV, other folds only):

      LLR_i = 1/2 * sum_k [ z_ik^2 - (z_ik - zhat_ik)^2 / s_k^2 - log s_k^2 ]

  The plain cosine weighs every content direction alike; the LLR weighs each by how well
  behaviour predicts it, so the many unpredictable directions of a text embedding stop adding
  noise. An item's own content enters its LLR only as z_i: the components, the ridge and the
  variances are fit on the other folds.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from trainer.reliability.oof import ridge_gcv
from trainer.reliability.signals import unit_rows

# a principal component is kept while its singular value is above this share of the first
# (a 21-d genre vector has fewer informative directions than the rank asked for)
MIN_COMPONENT = 1e-3


def neighbour_mean(
    item_users: sp.spmatrix, features: np.ndarray, k: int, *, chunk: int = 1024
) -> np.ndarray:
    """Mean unit content of each item's k nearest collaborative neighbours, [I, d] float64.

    Similarity = cosine of the items' interaction rows; the item itself is never its own
    neighbour; weights = max(similarity, 0) over the k most similar others, normalised to
    sum 1; a zero row where all k weights are 0 (no interactions, no co-interactions).
    """
    r = sp.csr_matrix(item_users, dtype=np.float64)
    n = r.shape[0]
    if features.shape[0] != n:
        raise ValueError(f"features have {features.shape[0]} rows, interactions {n} items")
    k = max(1, min(k, n - 1))
    norms = np.sqrt(np.asarray(r.multiply(r).sum(1)).ravel())
    r = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ r)
    rt = r.T.tocsr()
    f = unit_rows(features)
    out = np.zeros_like(f)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        s = np.asarray((r[start:stop] @ rt).todense())  # [c, n] collaborative cosine
        s[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # never itself
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(s, top, 1), 0.0)
        total = w.sum(1, keepdims=True)
        out[start:stop] = np.einsum("ck,ckd->cd", w / np.maximum(total, 1e-12), f[top])
    return out


def matching_llr(x: np.ndarray, y: np.ndarray, fold: np.ndarray, rank: int) -> np.ndarray:
    """Out-of-fold Gaussian log-likelihood ratio of y_i being x_i's own (module docstring), [n].

    ``x``: predictor inputs [n, k]; ``y``: content [n, d]; ``fold``: fold id per row; ``rank``:
    at most this many principal components of y (fewer where y has fewer informative ones).
    """
    out = np.zeros(len(y))
    for k in np.unique(fold):
        train, test = fold != k, fold == k
        mu = y[train].mean(0)
        _, sv, vt = np.linalg.svd(y[train] - mu, full_matrices=False)
        r = int(min(rank, (sv > MIN_COMPONENT * max(sv[0], 1e-300)).sum()))
        if r == 0:  # constant content in the training folds: nothing to match
            continue
        basis, sd = vt[:r].T, sv[:r] / np.sqrt(train.sum())
        z = ((y - mu) @ basis) / sd  # whitened component scores, unit variance on train
        w, b, var = ridge_gcv(x[train], z[train])
        var = np.maximum(var, 1e-6)
        zt, zh = z[test], x[test] @ w + b
        out[test] = 0.5 * (zt**2 - (zt - zh) ** 2 / var - np.log(var)).sum(1)
    return out
