"""The matching signals (trainer/reliability/matching.py) against hand computations."""

import numpy as np
import pytest
import scipy.sparse as sp

from trainer.reliability import matching, oof


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_neighbour_mean_by_hand():
    # real-valued interaction weights: no ties among similarities
    rng = np.random.default_rng(0)
    iu = rng.random((7, 10)) * (rng.random((7, 10)) < 0.6)
    iu[6] = 0.0  # item 6: no interactions at all
    f = rng.normal(size=(7, 3))
    k = 3
    norms = np.linalg.norm(iu, axis=1)
    fu = _unit(f)
    expected = np.zeros((7, 3))
    for i in range(7):
        sims = []
        for j in range(7):
            if j == i:
                continue
            den = norms[i] * norms[j]
            sims.append((iu[i] @ iu[j] / den if den > 0 else 0.0, j))
        top = sorted(sims, reverse=True)[:k]
        w = np.array([max(s, 0.0) for s, _ in top])
        if w.sum() > 0:
            expected[i] = (w[:, None] * fu[[j for _, j in top]]).sum(0) / w.sum()
    for chunk in (1, 3, 100):
        got = matching.neighbour_mean(sp.csr_matrix(iu), f, k, chunk=chunk)
        np.testing.assert_allclose(got, expected, atol=1e-12)
    assert not got[6].any()  # no interactions: no neighbours with weight


def test_neighbour_mean_never_uses_the_items_own_content():
    rng = np.random.default_rng(1)
    iu = sp.csr_matrix(rng.random((9, 12)))
    f = rng.normal(size=(9, 4))
    base = matching.neighbour_mean(iu, f, 4)
    f2 = f.copy()
    f2[5] = 50.0 * rng.normal(size=4)
    got = matching.neighbour_mean(iu, f2, 4)
    np.testing.assert_array_equal(got[5], base[5])


def test_neighbour_mean_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="features have 3 rows"):
        matching.neighbour_mean(sp.csr_matrix(np.ones((4, 2))), np.ones((3, 2)), 2)


def _hand_ridge(x, y):
    """Ridge with lambda by summed GCV and each column's GCV error, from the hat matrix."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    n = len(x)
    s2mean = (np.linalg.svd(xc, compute_uv=False) ** 2).mean()
    best = None
    for rel in oof.LAMBDA_GRID:
        lam = rel * s2mean
        inv = np.linalg.inv(xc.T @ xc + lam * np.eye(x.shape[1]))
        hat = xc @ inv @ xc.T
        res = yc - hat @ yc
        dof = (n - np.trace(hat)) ** 2
        gcv = n * (res**2).sum() / dof
        if best is None or gcv < best[0]:
            best = (gcv, inv @ xc.T @ yc, n * (res**2).sum(0) / dof)
    _, w, var = best
    return w, my - mx @ w, var


def test_ridge_gcv_column_errors_by_hand():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(25, 4))
    y = x @ rng.normal(size=(4, 3)) + rng.normal(size=(25, 3)) * np.array([0.1, 1.0, 3.0])
    w, b, var = oof.ridge_gcv(x, y)
    hw, hb, hvar = _hand_ridge(x, y)
    np.testing.assert_allclose(w, hw, rtol=1e-8)
    np.testing.assert_allclose(b, hb, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(var, hvar, rtol=1e-8)
    assert var[0] < var[1] < var[2]  # the noisier column expects the larger error


def test_matching_llr_by_hand():
    rng = np.random.default_rng(3)
    n, rank = 36, 2
    x = rng.normal(size=(n, 3))
    y = np.c_[x @ rng.normal(size=(3, 4)), rng.normal(size=(n, 1))] + 0.3 * rng.normal(size=(n, 5))
    fold = oof.folds_of(n, 3, seed=0)
    got = matching.matching_llr(x, y, fold, rank)
    expected = np.empty(n)
    for k in range(3):
        tr, te = fold != k, fold == k
        mu = y[tr].mean(0)
        # principal directions of the training rows from their covariance matrix
        cov = (y[tr] - mu).T @ (y[tr] - mu)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(-vals)[:rank]
        basis, sd = vecs[:, order], np.sqrt(vals[order] / tr.sum())
        z = (y - mu) @ basis / sd
        w, b, var = _hand_ridge(x[tr], z[tr])
        for i in np.nonzero(te)[0]:
            zi, zh = z[i], x[i] @ w + b
            expected[i] = 0.5 * sum(zi**2 - (zi - zh) ** 2 / var - np.log(var))
    # eigenvector signs are arbitrary; the LLR does not depend on them
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


def planted_swaps(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, content y predictable from x with 40 rows swapped among themselves, swapped mask)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = x @ rng.normal(size=(5, 8)) + 0.5 * rng.normal(size=(n, 8))
    bad = rng.choice(n, 40, replace=False)
    y2 = y.copy()
    y2[bad] = y[rng.permutation(bad)]
    return x, y2, np.isin(np.arange(n), bad)


def test_matching_llr_ranks_own_content_above_a_swapped_one():
    x, y2, labels = planted_swaps(4)
    llr = matching.matching_llr(x, y2, oof.folds_of(len(x), 5, seed=0), rank=8)
    assert llr[~labels].mean() > llr[labels].mean() + 1.0


def test_matching_llr_never_sees_the_items_own_content():
    rng = np.random.default_rng(5)
    n = 40
    x = rng.normal(size=(n, 4))
    y = x @ rng.normal(size=(4, 6)) + 0.2 * rng.normal(size=(n, 6))
    fold = oof.folds_of(n, 4, seed=1)
    base = matching.matching_llr(x, y, fold, rank=3)
    i = 13
    y2 = y.copy()
    y2[i] = y[i] + 5.0
    # only item i's LLR moves among its fold: model, components and variances are the
    # other folds'
    got = matching.matching_llr(x, y2, fold, rank=3)
    same_fold = (fold == fold[i]) & (np.arange(n) != i)
    np.testing.assert_allclose(got[same_fold], base[same_fold], rtol=1e-12)
    assert got[i] != base[i]


def test_ridge_spectrum_from_the_gram_matrix_equals_the_thin_svd():
    # tall inputs take the Gram path, wide ones (a small catalogue, wide text) the thin SVD
    rng = np.random.default_rng(5)
    for n, k in ((25, 4), (12, 30)):
        xc = rng.normal(size=(n, k))
        xc -= xc.mean(0)  # centred, as ridge_gcv passes it: a null direction when wide
        yc = rng.normal(size=(n, 3))
        (sg, vg, ug), (ss, vs, us) = (oof.spectrum(xc, yc, gram=g) for g in (True, False))
        np.testing.assert_allclose(np.sort(sg), np.sort(ss), rtol=1e-8)
        # order and signs of the singular vectors differ; V S^-1 U^T yc (the least-norm fit)
        # and V S U^T yc (= xc^T yc) do not
        for f in (lambda s: 1 / s, lambda s: s):
            np.testing.assert_allclose(
                vg.T @ (f(sg)[:, None] * ug), vs.T @ (f(ss)[:, None] * us), rtol=1e-6, atol=1e-9
            )
        np.testing.assert_allclose(vs.T @ (ss[:, None] * us), xc.T @ yc, rtol=1e-8, atol=1e-9)


def test_neighbour_mean_of_dense_content_rows_by_hand():
    # the content-neighbour input: nearest items by another modality's content (cosine of rows)
    rng = np.random.default_rng(6)
    other = rng.normal(size=(8, 5))
    f = rng.normal(size=(8, 3))
    k = 2
    fu, ou = _unit(f), _unit(other)
    expected = np.zeros((8, 3))
    for i in range(8):
        sims = sorted(((ou[i] @ ou[j], j) for j in range(8) if j != i), reverse=True)[:k]
        w = np.array([max(s, 0.0) for s, _ in sims])
        if w.sum() > 0:
            expected[i] = (w[:, None] * fu[[j for _, j in sims]]).sum(0) / w.sum()
    got = matching.neighbour_mean(other, f, k, chunk=3)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(
        matching.neighbour_mean(sp.csr_matrix(other), f, k), expected, atol=1e-12
    )


def _hand_fit(x, y, tr, rank):
    """Whitened components from the covariance of the training rows, hand ridge on them."""
    mu = y[tr].mean(0)
    vals, vecs = np.linalg.eigh((y[tr] - mu).T @ (y[tr] - mu))
    order = np.argsort(-vals)[:rank]
    z = (y - mu) @ vecs[:, order] / np.sqrt(vals[order] / tr.sum())
    w, b, var = _hand_ridge(x[tr], z[tr])
    return z, x @ w + b, var


def _hand_llr(z, zh, var):
    return 0.5 * sum(z**2 - (z - zh) ** 2 / var - np.log(var))


def _hand_assignment(z, zh, var, i):
    logp = [-0.5 * sum((z[i] - zh[j]) ** 2 / var) for j in range(len(z))]
    return logp[i] - np.log(np.mean(np.exp(logp)))


def _linear_data(seed, n, noise=0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    signal = np.c_[x @ rng.normal(size=(3, 4)), rng.normal(size=(n, 1))]
    y = signal + noise * rng.normal(size=(n, 5))
    return x, y


def test_assignment_by_hand():
    x, y = _linear_data(7, 20)
    z, zh, var = _hand_fit(x, y, np.ones(20, bool), 3)
    rows = np.array([0, 5, 19])
    got = matching.assignment(z, zh, var, rows, chunk=2)
    np.testing.assert_allclose(got, [_hand_assignment(z, zh, var, i) for i in rows], rtol=1e-9)
    assert (got <= np.log(20) + 1e-12).all()


def test_robust_matching_by_hand():
    n, rank, drop = 48, 2, 0.25
    x, y = _linear_data(8, n)
    y[:6] = y[6:12]  # a few swapped rows for the refit to find
    fold = oof.folds_of(n, 3, seed=0)
    llr, assign = matching.robust_matching(x, y, fold, rank, drop)
    for k in range(3):
        tr = fold != k
        inner = np.full(n, np.nan)
        for j in (j for j in range(3) if j != k):
            z, zh, var = _hand_fit(x, y, tr & (fold != j), rank)
            for i in np.flatnonzero(fold == j):
                inner[i] = _hand_llr(z[i], zh[i], var)
        keep = tr & (inner >= np.quantile(inner[tr], drop))
        z, zh, var = _hand_fit(x, y, keep, rank)
        for i in np.flatnonzero(fold == k):
            np.testing.assert_allclose(llr[i], _hand_llr(z[i], zh[i], var), rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(
                assign[i], _hand_assignment(z, zh, var, i), rtol=1e-7, atol=1e-9
            )


def test_robust_matching_without_drop_is_the_plain_llr_and_rejects_a_bad_share():
    x, y = _linear_data(9, 30)
    fold = oof.folds_of(30, 3, seed=2)
    llr, _ = matching.robust_matching(x, y, fold, 3, 0.0)
    np.testing.assert_allclose(llr, matching.matching_llr(x, y, fold, 3), rtol=1e-12)
    with pytest.raises(ValueError, match="drop must be in"):
        matching.robust_matching(x, y, fold, 3, 1.0)


def test_robust_matching_never_sees_the_items_own_content():
    x, y = _linear_data(10, 45, noise=0.2)
    fold = oof.folds_of(45, 3, seed=1)
    base = matching.robust_matching(x, y, fold, 3, 0.2)
    i = 13
    y2 = y.copy()
    y2[i] = y[i] + 5.0
    got = matching.robust_matching(x, y2, fold, 3, 0.2)
    same_fold = (fold == fold[i]) & (np.arange(45) != i)
    for g, b in zip(got, base, strict=True):
        np.testing.assert_allclose(g[same_fold], b[same_fold], rtol=1e-12)
        assert g[i] != b[i]


def test_assignment_finds_a_row_whose_donor_explains_it_better():
    x, y2, labels = planted_swaps(11)
    llr, assign = matching.robust_matching(x, y2, oof.folds_of(len(x), 5, seed=0), 8, 0.2)
    assert assign[~labels].mean() > assign[labels].mean() + 1.0
    assert llr[~labels].mean() > llr[labels].mean() + 1.0


def test_principal_scores_by_hand():
    rng = np.random.default_rng(12)
    b = rng.normal(size=(30, 6)) @ rng.normal(size=(6, 6))
    got = matching.principal_scores(b, 2)
    c = b - b.mean(0)
    vals, vecs = np.linalg.eigh(c.T @ c)
    top = vecs[:, np.argsort(-vals)[:2]]
    # component signs are arbitrary: compare up to a sign per column
    expected = c @ top
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got.T @ got, np.diag(np.sort(vals)[::-1][:2]), rtol=1e-8, atol=1e-8)
    # a block no wider than the rank (or rank 0) is only centred
    np.testing.assert_allclose(matching.principal_scores(b, 6), c, atol=1e-12)
    np.testing.assert_allclose(matching.principal_scores(b, 0), c, atol=1e-12)
