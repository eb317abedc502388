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
- ``assignment``: the same Gaussian, but against every item's prediction instead of an average
  item: log P(content i is item i's | it is one of the catalogue's). A swapped-in row is often
  explained better by its donor's behaviour than by the item's own.
- ``robust_matching``: LLR and assignment from ridges refit without the training rows that the
  training folds themselves find least likely (swapped rows attenuate the fit and inflate the
  variances); nested, so an item's content still never reaches its own model.

Inputs (score.py): the collaborative embedding, the other modalities, ``neighbour_mean`` of each
modality over collaborative neighbours and of the scored modality over the items nearest by each
other modality's content (titles of items with like genres), each block cut to its leading
principal components (``principal_scores``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from trainer.reliability.oof import ridge_gcv
from trainer.reliability.signals import unit_rows

# a principal component is kept while its singular value is above this share of the first
# (a 21-d genre vector has fewer informative directions than the rank asked for)
MIN_COMPONENT = 1e-3


def principal_scores(block: np.ndarray, rank: int) -> np.ndarray:
    """The rows' scores on the block's top ``rank`` principal components (centred), [n, <=rank];
    the centred block itself when it has at most ``rank`` columns or ``rank`` is 0.

    A predictor input of a few hundred columns per block (text neighbour means) lets the
    ridge of each fold fit noise directions and costs a k^3 solve; its leading components
    keep what varies across items. Computed without the item-level target: it only rotates
    and truncates an input block."""
    b = np.asarray(block, dtype=np.float64)
    b = b - b.mean(0)
    if rank <= 0 or b.shape[1] <= rank:
        return b
    u, s, _ = np.linalg.svd(b, full_matrices=False)
    return u[:, :rank] * s[:rank]


def neighbour_mean(
    item_users: sp.spmatrix, features: np.ndarray, k: int, *, chunk: int = 1024
) -> np.ndarray:
    """Mean unit content of each item's k nearest collaborative neighbours, [I, d] float64.

    Similarity = cosine of the items' interaction rows; the item itself is never its own
    neighbour; weights = max(similarity, 0) over the k most similar others, normalised to
    sum 1; a zero row where all k weights are 0 (no interactions, no co-interactions).
    """
    n = item_users.shape[0]
    if features.shape[0] != n:
        raise ValueError(f"features have {features.shape[0]} rows, interactions {n} items")
    k = max(1, min(k, n - 1))
    if sp.issparse(item_users):
        r = sp.csr_matrix(item_users, dtype=np.float64)
        norms = np.sqrt(np.asarray(r.multiply(r).sum(1)).ravel())
        r = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ r)
        rt = r.T.tocsr()
    else:  # dense rows (another modality's content): the same cosine, without sparse overhead
        r = unit_rows(item_users)
        rt = r.T
    f = unit_rows(features)
    out = np.zeros_like(f)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        s = r[start:stop] @ rt  # [c, n] cosine of the rows
        s = np.asarray(s.todense()) if sp.issparse(s) else np.asarray(s)
        s[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # never itself
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(s, top, 1), 0.0)
        total = w.sum(1, keepdims=True)
        out[start:stop] = np.einsum("ck,ckd->cd", w / np.maximum(total, 1e-12), f[top])
    return out


def _fit_fold(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, rank: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Whitened component scores z of every row, their ridge predictions from x and the
    residual variances, all fit on the ``train`` rows only; None for constant content."""
    mu = y[train].mean(0)
    _, sv, vt = np.linalg.svd(y[train] - mu, full_matrices=False)
    r = int(min(rank, (sv > MIN_COMPONENT * max(sv[0], 1e-300)).sum()))
    if r == 0:  # constant content in the training rows: nothing to match
        return None
    basis, sd = vt[:r].T, sv[:r] / np.sqrt(train.sum())
    z = ((y - mu) @ basis) / sd  # whitened component scores, unit variance on train
    w, b, var = ridge_gcv(x[train], z[train])
    return z, x @ w + b, np.maximum(var, 1e-6)


def _llr(z: np.ndarray, zh: np.ndarray, var: np.ndarray) -> np.ndarray:
    return 0.5 * (z**2 - (z - zh) ** 2 / var - np.log(var)).sum(1)


def matching_llr(x: np.ndarray, y: np.ndarray, fold: np.ndarray, rank: int) -> np.ndarray:
    """Out-of-fold Gaussian log-likelihood ratio of y_i being x_i's own (module docstring), [n].

    ``x``: predictor inputs [n, k]; ``y``: content [n, d]; ``fold``: fold id per row; ``rank``:
    at most this many principal components of y (fewer where y has fewer informative ones).
    """
    out = np.zeros(len(y))
    for k in np.unique(fold):
        fit = _fit_fold(x, y, fold != k, rank)
        if fit is not None:
            z, zh, var = fit
            out[fold == k] = _llr(z[fold == k], zh[fold == k], var)
    return out


def assignment(
    z: np.ndarray, zh: np.ndarray, var: np.ndarray, rows: np.ndarray, *, chunk: int | None = None
) -> np.ndarray:
    """log P(the content of row i is row i's own | it is one of the n rows'), for each i in
    ``rows``, under the Gaussian of matching_llr and a uniform prior over the rows:

        A_i = log N(z_i; zh_i, var) - log mean_j N(z_i; zh_j, var)      (j over all n rows)

    <= log n. Where another item's behaviour explains the content better than the item's own
    (a swapped-in row: the donor's prediction fits it), A_i is low even when the LLR, which
    compares with an average item, is not.

    Time O(len(rows) * n * components); ``chunk`` rows at a time (default: ~4M distances,
    32 MB, whatever the catalogue size)."""
    a, b = z[rows] / np.sqrt(var), zh / np.sqrt(var)
    chunk = chunk or max(1, (1 << 22) // max(len(b), 1))
    bb = (b * b).sum(1)
    out = np.empty(len(rows))
    for start in range(0, len(rows), chunk):
        q = a[start : start + chunk]
        d2 = (q * q).sum(1)[:, None] - 2.0 * q @ b.T + bb[None, :]  # [c, n] squared distances
        own = d2[np.arange(len(q)), rows[start : start + chunk]]
        out[start : start + chunk] = -0.5 * own - (logsumexp(-0.5 * d2, axis=1) - np.log(len(b)))
    return out


def robust_matching(
    x: np.ndarray, y: np.ndarray, fold: np.ndarray, rank: int, drop: float
) -> tuple[np.ndarray, np.ndarray]:
    """matching_llr and ``assignment`` from ridges refit without the most suspicious rows.

    Swapped rows among the training rows pull the ridge towards the mean and inflate its
    residual variances. For fold k, each training row first gets an LLR from the training
    folds alone (leave one of them out); the ``drop`` share with the lowest is left out and
    the fit repeated on the rest. Nothing of fold k's content enters fold k's model, so an
    item's own content still enters its values only as z_i. Returns (llr [n], assignment [n]).
    """
    if not 0 <= drop < 1:
        raise ValueError(f"drop must be in [0, 1), got {drop}")
    llr, assign = np.zeros(len(y)), np.zeros(len(y))
    parts = list(np.unique(fold))
    # inner[k][j]: fold j's LLR under the fit on every fold but j and k; that one fit serves
    # outer fold k (scoring j) and outer fold j (scoring k)
    inner: dict[int, dict[int, np.ndarray]] = {k: {} for k in parts}
    if drop > 0 and len(parts) > 2:
        for a, k in enumerate(parts):
            for j in parts[a + 1 :]:
                fit = _fit_fold(x, y, (fold != j) & (fold != k), rank)
                for out_k, scored in ((k, j), (j, k)):
                    rows = fold == scored
                    inner[out_k][scored] = (
                        np.full(rows.sum(), np.nan) if fit is None
                        else _llr(fit[0][rows], fit[1][rows], fit[2])
                    )  # fmt: skip
    for k in parts:
        train = fold != k
        if inner[k]:
            values = np.full(len(y), np.nan)
            for j, v in inner[k].items():
                values[fold == j] = v
            if not np.isnan(values[train]).any():
                train = train & (values >= np.quantile(values[train], drop))
        fit = _fit_fold(x, y, train, rank)
        if fit is None:
            continue
        z, zh, var = fit
        test = np.flatnonzero(fold == k)
        llr[test] = _llr(z[test], zh[test], var)
        assign[test] = assignment(z, zh, var, test)
    return llr, assign
