"""User fold-in (trainer/foldin/users.py) against hand computations on a tiny model."""

import numpy as np
import pytest

from trainer.bundle import load_bundle, write_bundle
from trainer.foldin import FoldInInputError, UserFoldIn, UserInput, UserInputError, fold_in_user

N_ITEMS, M, DIM = 9, 2, 2  # D = M * d = 4: fewer than 4 items uses Woodbury, more the solve


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    rng = np.random.default_rng(3)
    arrays = {
        "user_emb": rng.normal(size=(2, M, DIM)).astype(np.float32),
        "item_emb": rng.normal(size=(N_ITEMS, M, DIM)).astype(np.float32),
        "item_weights": rng.uniform(0.5, 1.5, size=(N_ITEMS, M)).astype(np.float32),
        "item_pos_count": np.ones(N_ITEMS, np.int32),
        "item_popularity": np.ones(N_ITEMS, np.int32),
        "seen_indptr": np.array([0, 1, 2], np.int64),
        "seen_indices": np.array([0, 1], np.int32),
    }
    path = write_bundle(
        tmp_path_factory.mktemp("users") / "b",
        manifest={"model": "margo", "channels": [{"name": "image"}, {"name": "text"}]},
        arrays=arrays,
        user_ids=["u0", "u1"],
        item_ids=[f"i{n}" for n in range(N_ITEMS)],
    )
    return load_bundle(path)


def hand_ridge(v, rows, c, alpha, lam, prior):
    """q = (V_u^T C V_u + B)^-1 (V_u^T c + B p'), B = alpha V^T V + lam' I, lam' = lam tr(G) / D,
    p' = p / (weighted mean score of the user's items under p)."""
    g = v.T @ v
    b = alpha * g + lam * np.trace(g) / v.shape[1] * np.eye(v.shape[1])
    vu = v[rows]
    p = prior / (c @ (vu @ prior) / c.sum()) if prior.any() else prior
    return np.linalg.inv(vu.T @ np.diag(c) @ vu + b) @ (vu.T @ c + b @ p)


@pytest.mark.parametrize("rows", [[2], [0, 4, 5], [0, 1, 2, 3, 4, 6]])  # Woodbury and solve
def test_ridge_equals_the_hand_computation(bundle, rows):
    v = bundle.item_vectors().astype(np.float64)
    c = np.linspace(0.5, 2.0, len(rows))
    prior = np.array([0.3, -0.2, 0.1, 0.5])
    prior = prior if (v[rows] @ prior).mean() > 0 else -prior  # a prior scoring the items up
    f = UserFoldIn(bundle, method="ridge", alpha=0.2, lam=0.5, prior_steps=0)
    got = f.fold_in(np.array(rows), weights=c, prior=prior)
    np.testing.assert_allclose(got, hand_ridge(v, rows, c, 0.2, 0.5, prior), rtol=1e-5)
    assert got.dtype == np.float32 and got.shape == (M * DIM,)
    # a zero confidence is the same as leaving the item out; no prior is prior 0
    z = f.fold_in(np.array([*rows, 8]), weights=np.r_[c, 0.0])
    np.testing.assert_allclose(z, hand_ridge(v, rows, c, 0.2, 0.5, np.zeros(4)), rtol=1e-5)


def test_bpr_steps_equal_the_hand_computation(bundle):
    v = bundle.item_vectors().astype(np.float64)
    rows = [1, 3]
    f = UserFoldIn(bundle, method="bpr", alpha=0.2, lam=0.5, steps=2, lr=0.7, reg=0.1,
                   n_negatives=N_ITEMS)  # every other item is a negative: no sampling
    q = hand_ridge(v, rows, np.ones(2), 0.2, 0.5, np.zeros(4))
    neg = [n for n in range(N_ITEMS) if n not in rows]
    lr = 0.7 / np.mean((v**2).sum(1))
    for _ in range(2):  # mean over (p, n) of sigma(q.v_n - q.v_p)(v_p - v_n), minus reg q
        grad = np.zeros(4)
        for p in rows:
            for n in neg:
                s = 1 / (1 + np.exp(-(q @ v[n] - q @ v[p])))
                grad += s * (v[p] - v[n]) / (len(rows) * len(neg))
        q = q + lr * (grad - 0.1 * q)
    np.testing.assert_allclose(f.fold_in(np.array(rows)), q, rtol=1e-5)
    # the same input gives the same q with sampled negatives too (one seeded draw per call)
    g = UserFoldIn(bundle, method="bpr", n_negatives=4)
    np.testing.assert_array_equal(g.fold_in(np.array(rows)), g.fold_in(np.array(rows)))


def test_a_known_user_continues_from_the_trained_q_by_hand(bundle):
    v = bundle.item_vectors().astype(np.float64)
    p = bundle.query_vectors()[1].astype(np.float64)
    rows = [2, 5]
    f = UserFoldIn(bundle, reg=0.1, prior_steps=2, prior_lr=0.7, prior_negatives=N_ITEMS)
    neg = [n for n in range(N_ITEMS) if n not in rows]
    lr = 0.7 / np.mean((v**2).sum(1))
    q = p.copy()  # the trained q itself, unscaled, is the start and the anchor
    for _ in range(2):  # mean over (p, n) of sigma(q.v_n - q.v_p)(v_p - v_n), minus reg (q - p)
        grad = np.zeros(4)
        for i in rows:
            for n in neg:
                s = 1 / (1 + np.exp(-(q @ v[n] - q @ v[i])))
                grad += s * (v[i] - v[n]) / (len(rows) * len(neg))
        q = q + lr * (grad - 0.1 * (q - p))
    got = f.fold_in(np.array(rows), prior=p)
    np.testing.assert_allclose(got, q, rtol=1e-5)
    # the steps raise the user's items against the rest; no prior: the ridge fold as before
    assert (v[rows] @ got).mean() - (v[neg] @ got).mean() > (v[rows] @ p).mean() - (
        v[neg] @ p).mean()
    no_steps = UserFoldIn(bundle, prior_steps=0)
    np.testing.assert_allclose(f.fold_in(np.array(rows)), no_steps.fold_in(np.array(rows)))


def test_folded_items_count_like_catalogue_rows_and_mean_by_hand(bundle):
    v = bundle.item_vectors()
    f = UserFoldIn(bundle, method="ridge")
    np.testing.assert_allclose(
        f.fold_in(np.array([2]), item_vectors=v[[5, 6]]), f.fold_in(np.array([2, 5, 6])),
        rtol=1e-5,
    )
    mean = UserFoldIn(bundle, method="mean").fold_in(np.array([1, 2]), weights=[1.0, 3.0])
    np.testing.assert_allclose(mean, (v[1] + 3 * v[2]) / 4, rtol=1e-6)


def test_a_strong_prior_keeps_the_trained_direction(bundle):
    q = bundle.query_vectors()[0].astype(np.float64)
    v = bundle.item_vectors()
    item = int(np.argmax(v @ q))  # an item the trained q scores above 0
    f = UserFoldIn(bundle, method="ridge", lam=1e6, prior_steps=0)
    got = f.fold_in(np.array([item]), prior=q)
    np.testing.assert_allclose(got, q / (v[item] @ q), rtol=1e-3)  # p' = p / its item's score
    # a prior that scores the user's items below 0 is no guide: the fold ignores it
    np.testing.assert_allclose(f.fold_in(np.array([item]), prior=-q), f.fold_in([item]), rtol=1e-6)


def test_default_fold_in_is_cached_per_bundle_and_ranks_its_items_up(bundle):
    assert UserFoldIn.from_bundle(bundle) is UserFoldIn.from_bundle(bundle)
    q = fold_in_user(bundle, np.array([3]))
    scores = bundle.item_vectors() @ q
    assert scores[3] > np.median(scores)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"item_rows": np.array([1, 9])}, "item row 9 is not in the catalogue"),
        ({"item_rows": np.array([-1])}, "item row -1"),
        ({"item_rows": np.array([], np.int64)}, "at least one interaction"),
        ({"item_rows": [1], "item_vectors": np.zeros((1, 3))}, r"expected \[n, 4\]"),
        ({"item_rows": [1], "item_vectors": np.full((1, 4), np.nan)}, "row 0: NaN"),
        ({"item_rows": [1, 2], "weights": [1.0]}, "weights: expected 2"),
        ({"item_rows": [1], "weights": [-1.0]}, "weights"),
        ({"item_rows": [1], "prior": np.zeros(3)}, "prior: expected 4"),
    ],
)
def test_bad_input_is_a_clear_value_error(bundle, kwargs, match):
    rows = kwargs.pop("item_rows")
    with pytest.raises(FoldInInputError, match=match):
        fold_in_user(bundle, rows, **kwargs)


def test_many_users_at_once_equal_one_at_a_time(bundle):
    """fold_in_many (padded, stacked solves) against fold_in user by user: one interaction,
    duplicates, zero confidences, folded items' vectors, priors, Woodbury and direct sizes
    in one batch, and a batch cut by size."""
    v = bundle.item_vectors()
    q = bundle.query_vectors()
    users = [
        UserInput(np.array([2])),  # one interaction
        UserInput(np.array([3, 3, 5])),  # a duplicate counts twice, as in fold_in
        UserInput(np.array([0, 1, 2, 3, 4, 5, 6, 7])),  # >= D: the direct solve
        UserInput(np.array([8, 6, 4, 2, 0])),  # batched with 3s: they take the direct solve
        UserInput(np.array([1, 8]), weights=np.array([2.0, 0.0])),  # a zero confidence
        UserInput(np.array([4]), item_vectors=v[[6, 7]] * 0.5),  # folded items
        UserInput(np.array([0, 6]), prior=q[0]),  # a known user: the rescaled prior
        UserInput(np.array([7]), prior=-q[0] if v[7] @ q[0] > 0 else q[0]),  # ignored prior
        UserInput(np.array([1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3]), prior=q[1]),
        UserInput(np.array([], np.int64), item_vectors=v[[2]]),  # only a folded item
    ]
    for method in ("ridge", "mean"):
        f = UserFoldIn(bundle, method=method, alpha=0.2, lam=0.5, prior_steps=0)
        got = f.fold_in_many(users)
        want = np.stack([
            f.fold_in(u.item_rows, item_vectors=u.item_vectors, weights=u.weights, prior=u.prior)
            for u in users
        ])
        assert got.dtype == np.float32 and got.shape == (len(users), M * DIM)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(got[0], got[1])  # rows are the users', in order
    # one user per batch (BATCH_USERS 1) gives the same rows; none gives none
    import trainer.foldin.users as mod

    f = UserFoldIn(bundle, prior_steps=0)
    whole = f.fold_in_many(users)
    old, mod.BATCH_USERS = mod.BATCH_USERS, 1
    try:
        np.testing.assert_allclose(f.fold_in_many(users), whole, rtol=1e-5, atol=1e-6)
    finally:
        mod.BATCH_USERS = old
    assert f.fold_in_many([]).shape == (0, M * DIM)


def test_many_users_with_steps_equal_one_at_a_time(bundle):
    q = bundle.query_vectors()
    users = [UserInput(np.array([1, 3])), UserInput(np.array([2, 5]), prior=q[1])]
    for f in (UserFoldIn(bundle, method="bpr", n_negatives=4, steps=3),
              UserFoldIn(bundle, prior_steps=2, prior_negatives=N_ITEMS)):
        want = [f.fold_in(u.item_rows, prior=u.prior) for u in users]
        np.testing.assert_allclose(f.fold_in_many(users), np.stack(want), rtol=1e-5)


def test_a_bad_user_of_many_is_named(bundle):
    f = UserFoldIn.from_bundle(bundle)
    users = [UserInput(np.array([1])), UserInput(np.array([1, 9])), UserInput(np.array([2]))]
    with pytest.raises(UserInputError, match="user 1: item row 9") as info:
        f.fold_in_many(users)
    assert info.value.user == 1 and isinstance(info.value, FoldInInputError)
    with pytest.raises(UserInputError, match="user 0: .*at least one interaction"):
        f.fold_in_many([UserInput(np.array([], np.int64))])


def test_bundle_bound_precomputations_do_not_keep_their_bundle_alive():
    import gc

    from trainer.foldin.cache import BundleBound

    class Holder:  # stands in for a ModelBundle: only weak-referenceability matters
        pass

    held = Holder()
    bound = BundleBound(held)  # type: ignore[arg-type]
    assert bound.bundle is held
    del held
    gc.collect()
    with pytest.raises(ReferenceError, match="model bundle of this BundleBound was released"):
        _ = bound.bundle
