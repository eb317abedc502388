"""Each reliability signal against a hand computation on a tiny dataset (trainer/reliability/)."""

import numpy as np
import pytest
import scipy.sparse as sp

from trainer.audit import content_consistency
from trainer.reliability import calibrate, oof, signals
from trainer.reliability.calibrate import LogisticCombiner, inject_swaps, roc_auc
from trainer.reliability.model_signals import bpr_reliability, swap_item_rows


def _tiny(seed: int = 0, n_users: int = 15, n_items: int = 9):
    rng = np.random.default_rng(seed)
    r = rng.random((n_users, n_items)) < 0.35
    r[np.arange(n_users), np.arange(n_users) % n_items] = True  # every user has an item
    users, items = np.nonzero(r)
    return np.c_[users, items].astype(np.int64), rng


def test_agreement_is_the_audit():
    train, rng = _tiny()
    iu = sp.csr_matrix((np.ones(len(train)), (train[:, 1], train[:, 0])), shape=(9, 15))
    f = rng.normal(size=(9, 4))
    np.testing.assert_array_equal(signals.agreement(iu, f), content_consistency(iu, f))


def test_profile_rank_matches_a_loop_over_pairs():
    train, rng = _tiny(1)
    n_users, n_items = 15, 9
    f = rng.normal(size=(n_items, 3))
    fu = f / np.linalg.norm(f, axis=1, keepdims=True)
    expected_sum, expected_n = np.zeros(n_items), np.zeros(n_items)
    for u in range(n_users):
        mine = train[train[:, 0] == u, 1]
        if len(mine) < 2:
            continue
        for i in mine:
            prof = fu[[j for j in mine if j != i]].sum(0)
            s = fu @ prof
            below = sum(s[k] < s[i] for k in range(n_items) if k != i)
            expected_sum[i] += below / (n_items - 1)
            expected_n[i] += 1
    expected = np.where(expected_n > 0, expected_sum / np.maximum(expected_n, 1), np.nan)
    for chunk in (1, 4, 1000):
        got = signals.profile_rank(train, n_users, f, chunk=chunk)
        np.testing.assert_allclose(got, expected, equal_nan=True)


def _hand_ridge_gcv(x, y):
    """Ridge with lambda chosen by GCV, written from the hat matrix."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    n = len(x)
    s2mean = (np.linalg.svd(xc, compute_uv=False) ** 2).mean()
    best = None
    for rel in oof.LAMBDA_GRID:
        lam = rel * s2mean
        inv = np.linalg.inv(xc.T @ xc + lam * np.eye(x.shape[1]))
        hat = xc @ inv @ xc.T
        gcv = n * ((yc - hat @ yc) ** 2).sum() / (n - np.trace(hat)) ** 2
        if best is None or gcv < best[0]:
            best = (gcv, inv @ xc.T @ yc)
    w = best[1]
    return w, my - mx @ w


def test_cross_modal_matches_per_fold_ridge_by_hand():
    rng = np.random.default_rng(2)
    n = 30
    collab = rng.normal(size=(n, 4))
    feats = {"image": rng.normal(size=(n, 5)), "text": rng.normal(size=(n, 3))}
    fold = oof.folds_of(n, 3, seed=0)
    got = oof.cross_modal(collab, feats, "text", fold)

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    def block(a):
        return a / np.linalg.norm(a, axis=1).mean()

    x = np.c_[block(collab), block(unit(feats["image"]))]
    y = unit(feats["text"])
    expected = np.empty(n)
    for k in range(3):
        tr, te = fold != k, fold == k
        w, b = _hand_ridge_gcv(x[tr], y[tr])
        centre = y[tr].mean(0)
        p, a = x[te] @ w + b - centre, y[te] - centre
        expected[te] = (p * a).sum(1) / np.linalg.norm(p, axis=1) / np.linalg.norm(a, axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)


def test_out_of_fold_prediction_never_sees_the_items_own_content():
    rng = np.random.default_rng(3)
    n = 40
    x = rng.normal(size=(n, 6))
    y = x @ rng.normal(size=(6, 4)) + 0.1 * rng.normal(size=(n, 4))
    fold = oof.folds_of(n, 4, seed=1)
    fit = np.ones(n, dtype=bool)
    pred, centre = oof.oof_predict(x, y, fold, fit)
    for i in (0, 17, 39):
        y2 = y.copy()
        y2[i] = 100.0 * rng.normal(size=4)  # anything at all as item i's own content
        pred2, centre2 = oof.oof_predict(x, y2, fold, fit)
        np.testing.assert_array_equal(pred2[i], pred[i])
        np.testing.assert_array_equal(centre2[i], centre[i])
        others = fold != fold[i]
        assert not np.allclose(pred2[others], pred[others])  # it is used for the other folds


def test_collab_from_content_by_hand_and_nan_without_interactions():
    rng = np.random.default_rng(4)
    n = 24
    collab = rng.normal(size=(n, 3))
    has = np.ones(n, dtype=bool)
    has[[2, 9]] = False
    collab[~has] = 0.0
    f = rng.normal(size=(n, 5))
    fold = oof.folds_of(n, 3, seed=0)
    got = oof.collab_from_content(collab, f, fold, has)
    assert np.isnan(got[[2, 9]]).all()
    fu = f / np.linalg.norm(f, axis=1, keepdims=True)
    for k in range(3):
        tr, te = (fold != k) & has, (fold == k) & has
        w, b = _hand_ridge_gcv(fu[tr], collab[tr])
        centre = collab[tr].mean(0)
        p, a = fu[te] @ w + b - centre, collab[te] - centre
        want = (p * a).sum(1) / np.linalg.norm(p, axis=1) / np.linalg.norm(a, axis=1)
        np.testing.assert_allclose(got[te], want, rtol=1e-8)


def test_collaborative_embedding_is_deterministic_and_zero_for_unseen_items():
    train, _ = _tiny(5, n_users=20, n_items=12)
    train = train[train[:, 1] != 11]  # item 11 has no interaction
    iu = sp.csr_matrix((np.ones(len(train)), (train[:, 1], train[:, 0])), shape=(12, 20))
    a = oof.collaborative_embedding(iu, k=4, seed=0)
    np.testing.assert_allclose(a, oof.collaborative_embedding(iu, k=4, seed=0))
    assert a.shape == (12, 4) and np.all(a[11] == 0)
    # U_k S_k of the row-normalised matrix reproduces its item-item Gram on the top-k subspace
    r = iu.toarray()
    r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    u, s, _ = np.linalg.svd(r, full_matrices=False)
    np.testing.assert_allclose(a @ a.T, (u[:, :4] * s[:4]) @ (u[:, :4] * s[:4]).T, atol=1e-8)


def test_bpr_reliability_matches_eq6_by_hand():
    rng = np.random.default_rng(6)
    n_users, n_items, m, d = 4, 5, 2, 3
    ue = rng.normal(size=(n_users, m, d)).astype(np.float32)
    ie = rng.normal(size=(n_items, m, d)).astype(np.float32)
    w = rng.dirichlet([1, 1], size=n_items).astype(np.float32)
    train = np.array([[0, 1], [1, 1], [2, 3], [3, 0]])
    got = bpr_reliability(train, ue, ie, w, tau_conf=2.0, negatives=3, seed=9)
    neg = np.random.default_rng(9).integers(0, n_items, size=len(train) * 3)
    num, den = np.zeros((n_items, m)), np.zeros(n_items)
    for t, (u, i) in enumerate(np.repeat(train, 3, axis=0)):
        k = neg[t]
        gap = (ue[u] * ie[i]).sum(-1) - (ue[u] * ie[k]).sum(-1)  # Eq. 5
        if (gap < 0).all():
            continue  # no target (invalid)
        e = np.where(gap < 0, 0.0, np.exp(gap - gap.max()))
        z = e / e.sum()  # Eq. 6 with negative gaps masked
        y_pos = (w[i] * (ue[u] * ie[i]).sum(-1)).sum()  # Eq. 3
        y_neg = (w[k] * (ue[u] * ie[k]).sum(-1)).sum()
        gamma = max(np.tanh((y_pos - y_neg) / 2.0), 0.0)  # Eq. 7
        num[i] += gamma * z
        den[i] += gamma
    want = np.where(den[:, None] > 0, num / np.maximum(den, 1e-300)[:, None], np.nan)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(got[[2, 4]]).all()  # never a positive: no evidence


def test_swap_item_rows_takes_the_donors_row():
    ie = np.arange(4 * 2 * 1, dtype=np.float32).reshape(4, 2, 1)
    out = swap_item_rows(ie, ["image", "text"], {"text": np.array([-1, 3, -1, -1])})
    assert out[1, 1, 0] == ie[3, 1, 0] and out[1, 0, 0] == ie[1, 0, 0]
    np.testing.assert_array_equal(np.delete(out, 1, 0), np.delete(ie, 1, 0))


def test_inject_swaps_copies_another_items_row():
    rng = np.random.default_rng(0)
    feats = {"image": rng.normal(size=(50, 3))}
    out, injected, donors = inject_swaps(feats, 0.2, np.random.default_rng(1))
    bad = np.flatnonzero(injected["image"])
    assert bad.size == 10 and np.all(donors["image"][bad] != bad)
    np.testing.assert_array_equal(out["image"][bad], feats["image"][donors["image"][bad]])
    keep = ~injected["image"]
    np.testing.assert_array_equal(out["image"][keep], feats["image"][keep])


def test_logistic_combiner_and_roc_auc():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] - 0.5 * x[:, 2] + 0.3 * rng.normal(size=400)) > 0.8
    x[::17, 1] = np.nan  # missing values become the mean
    comb = LogisticCombiner(l2=1e-3).fit(x, y)
    assert comb.coef[0] > 0 > comb.coef[2] and abs(comb.coef[1]) < 0.5
    p = comb.predict(x)
    assert np.all((p >= 0) & (p <= 1)) and roc_auc(y, p) > 0.95
    assert roc_auc(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.5, 0.5, 0.9])) == pytest.approx(
        (1 + 1 + 0.5 + 1) / 4
    )


def test_weighted_combiner_equals_repeated_rows_and_clean_weights_by_hand():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] + 0.5 * rng.normal(size=60)) > 0.3
    # integer weights: the optimum is that of each row repeated that many times (the weights
    # are rescaled to mean 1, the rows' mean log-loss of the repeats is the weighted mean)
    reps = rng.integers(1, 4, size=60)
    weighted = calibrate.LogisticCombiner(1e-2).fit(x, y, reps.astype(float))
    xr, yr = np.repeat(x, reps, axis=0), np.repeat(y, reps)
    z = (xr - weighted.mean) / weighted.std  # the fit standardises by the unweighted rows
    s = z @ weighted.coef + weighted.bias
    grad = z.T @ (1 / (1 + np.exp(-s)) - yr) / len(yr) + 1e-2 * weighted.coef
    np.testing.assert_allclose(grad, 0.0, atol=1e-4)
    np.testing.assert_allclose(np.mean(1 / (1 + np.exp(-s)) - yr), 0.0, atol=1e-4)
    plain = calibrate.LogisticCombiner(1e-2).fit(x, y)
    assert np.abs(plain.coef - weighted.coef).max() > 1e-3  # the weights did matter
    with pytest.raises(ValueError, match="weight must be"):
        calibrate.LogisticCombiner().fit(x, y, -np.ones(60))
    injected = np.array([True, False, False, False, True, False])
    w = calibrate.clean_weights(injected, np.array([0.1, 0.7, 0.2]), rounds=2)
    np.testing.assert_allclose(w, [1.0, 0.3, 0.8, 0.9, 1.0, 0.8])
    with pytest.raises(ValueError, match="rows for 3 copies"):
        calibrate.clean_weights(injected, np.array([0.1, 0.7, 0.2]), rounds=3)
