"""Cross-modal consistency learned out of fold: does an item's content look like what its
collaborative position (and its other modalities) predict?

    collaborative embedding  c_i = the item's row of a truncated SVD of the row-normalised
                             [items, users] training matrix (no content involved)
    cross-modal              predict f_i^m (centred) from [c_i, f_i^m' for m' != m] with ridge
                             regression fit on the OTHER folds; signal = cos(prediction, f_i^m)
    collab-from-content      predict c_i from f_i^m the same way; signal = cos(prediction, c_i)

An item's prediction is computed by a model that never saw its row: ridge weights, centring
means and the ridge strength (generalised cross-validation) all come from the other folds only.
So an item's own content of modality m enters its cross-modal signal only through the cosine.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from trainer.reliability.signals import unit_rows

# ridge strengths tried by GCV, relative to the mean squared singular value of the fold's inputs
LAMBDA_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)


def collaborative_embedding(item_users: sp.spmatrix, k: int = 64, seed: int = 0) -> np.ndarray:
    """Rows U_k S_k of a rank-k SVD of the row-normalised item-user matrix, [I, k] float64.

    Items without interactions get a zero row. Deterministic for a given ``seed``.
    """
    r = sp.csr_matrix(item_users, dtype=np.float64)
    norms = np.sqrt(np.asarray(r.multiply(r).sum(1)).ravel())
    r = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ r)
    k = max(1, min(k, min(r.shape) - 1))
    v0 = np.random.default_rng(seed).standard_normal(min(r.shape))
    u, s, _ = svds(r, k=k, v0=v0)
    order = np.argsort(-s)
    emb = u[:, order] * s[order]
    # svds' signs are arbitrary; fix them so equal inputs give equal outputs
    emb *= np.where(emb.sum(0) < 0, -1.0, 1.0)
    emb[norms == 0] = 0.0
    return emb


def folds_of(n: int, k: int, seed: int) -> np.ndarray:
    """Fold id per row, [n] int: a seeded permutation cut into k nearly equal parts."""
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return fold


def _ridge_gcv(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge weights and intercept for centred-by-fit data, lambda chosen by GCV on (x, y)."""
    w, b, _ = ridge_gcv(x, y)
    return w, b


def spectrum(
    xc: np.ndarray, yc: np.ndarray, *, gram: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, V^T, U^T yc) of the thin SVD xc = U S V^T, null directions dropped.

    ``gram`` (default: when rows >= inputs) takes it from the small Gram matrix, xc^T xc =
    V S^2 V^T and U^T yc = S^-1 V^T xc^T yc (k x k, cheap for tall inputs); otherwise the
    thin SVD itself (cheaper when a small catalogue meets wide text inputs). Equal results.
    """
    if gram is None:
        gram = len(xc) >= xc.shape[1]
    if gram:
        s2, v = np.linalg.eigh(xc.T @ xc)
        keep = s2 > 1e-10 * max(float(s2.max()), 1e-300)
        s, vt = np.sqrt(s2[keep]), v[:, keep].T
        return s, vt, (vt @ (xc.T @ yc)) / s[:, None]
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    keep = s * s > 1e-10 * max(float(s[0] ** 2) if len(s) else 0.0, 1e-300)
    return s[keep], vt[keep], u[:, keep].T @ yc


def ridge_gcv(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge weights [k, d_y], intercept [d_y] and each output column's GCV estimate of its
    prediction error [d_y] (the residual variance a new row should expect); one lambda for all
    columns, chosen by their summed GCV."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    s, vt, uty = spectrum(xc, yc)
    s2 = s * s
    n = len(x)
    outside = float((yc * yc).sum() - (uty * uty).sum())  # part of y no lambda can fit
    outside_cols = (yc * yc).sum(0) - (uty * uty).sum(0)
    best = None
    for rel in LAMBDA_GRID:
        lam = rel * s2.mean()
        h = s2 / (s2 + lam)
        resid = outside + float((((1 - h)[:, None] * uty) ** 2).sum())
        gcv = n * resid / max(n - h.sum(), 1e-9) ** 2
        if best is None or gcv < best[0]:
            best = (gcv, lam, h)
    _, lam, h = best
    w = vt.T @ ((s / (s2 + lam))[:, None] * uty)
    resid_cols = np.maximum(outside_cols, 0.0) + (((1 - h)[:, None] * uty) ** 2).sum(0)
    return w, my - mx @ w, n * resid_cols / max(n - h.sum(), 1e-9) ** 2


def oof_predict(
    x: np.ndarray, y: np.ndarray, fold: np.ndarray, fit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold ridge predictions of y from x and the centre each is judged against.

    Row i is predicted by a ridge fit on the rows of other folds where ``fit`` is true; its
    centre is the mean target of those rows. Both [n, d_y]; neither depends on y[i].
    """
    pred = np.zeros((len(x), y.shape[1]))
    centre = np.zeros_like(pred)
    for k in np.unique(fold):
        train = (fold != k) & fit
        w, b = _ridge_gcv(x[train], y[train])
        test = fold == k
        pred[test] = x[test] @ w + b
        centre[test] = y[train].mean(0)
    return pred, centre


def input_blocks(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate input blocks, each scaled to unit mean row norm so none dominates."""
    out = []
    for p in parts:
        scale = np.linalg.norm(p, axis=1).mean()
        out.append(p / max(scale, 1e-12))
    return np.concatenate(out, 1)


def _cos_centred(pred: np.ndarray, actual: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Row-wise cos(pred - centre, actual - centre); NaN for a zero vector."""
    p, a = pred - centre, actual - centre
    num = (p * a).sum(1)
    den = np.linalg.norm(p, axis=1) * np.linalg.norm(a, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, num / den, np.nan)


def cross_modal(
    collab: np.ndarray,
    features: dict[str, np.ndarray],
    modality: str,
    fold: np.ndarray,
) -> np.ndarray:
    """cos(out-of-fold prediction of f_i^m from [c_i, other modalities], f_i^m), [I].

    Prediction and actual content are both taken relative to the training folds' mean
    content, so a generic item near the mean does not score high by default.
    """
    pred, centre = cross_modal_prediction(collab, features, modality, fold)
    return _cos_centred(pred, unit_rows(features[modality]), centre)


def cross_modal_prediction(
    collab: np.ndarray, features: dict[str, np.ndarray], modality: str, fold: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold prediction of the unit rows of f^m from [c_i, other modalities] and its
    centre (the training folds' mean), both [I, d_m]."""
    y = unit_rows(features[modality])
    x = input_blocks([collab, *(unit_rows(f) for m, f in features.items() if m != modality)])
    return oof_predict(x, y, fold, np.ones(len(y), dtype=bool))


def collab_from_content(
    collab: np.ndarray, features: np.ndarray, fold: np.ndarray, has_collab: np.ndarray
) -> np.ndarray:
    """cos(out-of-fold prediction of c_i from f_i^m, c_i), [I]; NaN without interactions."""
    x = unit_rows(features)
    pred, centre = oof_predict(x, collab, fold, has_collab)
    out = _cos_centred(pred, collab, centre)
    out[~has_collab] = np.nan
    return out
