"""A new item's edges from its posted interactions (trainer/foldin/interactions.py) by hand."""

import json

import numpy as np
import pytest

from trainer.bundle import load_bundle, write_bundle
from trainer.bundle_foldin import ITEM_EDGES, USER_MSG, USER_OUT, USER_SELF
from trainer.config import TrainConfig
from trainer.errors import BundleError
from trainer.export import export_model
from trainer.foldin import (
    FoldInInputError,
    FoldInUnavailable,
    ItemUsers,
    fold_in_items,
    has_user_out,
)
from trainer.foldin.interactions import (
    ItemEdges,
    posted_users,
    updated_catalogue,
    user_out_from_graph,
    with_user_out,
)
from trainer.manifest import MANIFEST
from trainer.train import fit

FAST = {"epochs": 1, "batch_size": 512, "lr": 0.01, "patience": 5, "hidden": 32, "dim": 16}


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """The default margo + id model on FREEDOM (one epoch): its bundle, n exported."""
    cfg = TrainConfig(model="margo", backbone="freedom", id_channel=True, seed=4, **FAST)
    result = fit(tiny, cfg, progress=False)
    return load_bundle(export_model(result, tiny, cfg, tmp_path_factory.mktemp("inter") / "b"))


def test_the_export_writes_n_as_the_numpy_graph_computes_it(tiny, trained):
    assert USER_OUT in trained.arrays
    again = user_out_from_graph(trained, np.unique(tiny.train[:, :2], axis=0))
    np.testing.assert_allclose(trained.arrays[USER_OUT], again, rtol=1e-4, atol=1e-5)
    assert with_user_out(trained, np.empty((0, 2), np.int64)) is trained  # kept as exported


def test_a_catalogue_items_training_users_give_exactly_its_edges(tiny, trained):
    bundle = trained
    assert has_user_out(bundle)
    r = np.asarray(bundle.arrays[ITEM_EDGES], np.float64)
    x = np.asarray(bundle.arrays["foldin_state"], np.float64)
    layers = round(1 / bundle.manifest.fold_in.self_scale) - 1
    idc = bundle.channels.index("id")
    items = np.arange(bundle.n_items)
    users = [ItemUsers(np.unique(tiny.train[tiny.train[:, 1] == i, 0])) for i in items]
    edges, counts = ItemEdges.from_bundle(bundle).edges(users)
    # r_i = Z_i - X_i / (L+1) with the id node kept: the users' part is r_i less X_i^id/(L+1)
    want = r.copy()
    want[:, idc] -= x[:, idc] / (layers + 1)
    np.testing.assert_allclose(edges.reshape(r.shape), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(counts, [len(u.user_rows) for u in users])
    # and mirrors the user side: e_u - s_u = sum_{i in N(u)} m_i / sqrt(d_u) (no n involved),
    # so the same graph gives both halves of F3
    s, m = (np.asarray(bundle.arrays[k]).reshape(bundle.n_users if k == USER_SELF
                                                 else bundle.n_items, -1)
            for k in (USER_SELF, USER_MSG))
    u = 7
    mine = np.unique(tiny.train[tiny.train[:, 0] == u, 1])
    np.testing.assert_allclose(bundle.query_vectors()[u], s[u] + m[mine].sum(0)
                               / np.sqrt(len(mine)), rtol=1e-4, atol=1e-5)


def test_fold_in_with_posted_users_by_hand(tiny, trained):
    bundle = trained
    n = np.asarray(bundle.arrays[USER_OUT], np.float64).reshape(bundle.n_users, -1)
    feats = {mm: tiny.features[mm][[3, 11, 20]] for mm in ("image", "text")}
    plain = fold_in_items(bundle, feats)
    q = bundle.query_vectors()[[9]].astype(np.float64) * 1.2  # a user the model never saw
    users = [ItemUsers(np.array([2, 5])), ItemUsers(np.empty(0, np.int64)),
             ItemUsers(np.array([1]), user_vectors=q, weights=np.array([1.0, 3.0]))]
    folded = fold_in_items(bundle, feats, users=users)
    shape = plain.embeddings.shape[1:]
    # the users' part sum_u c_u n_u / sqrt(sum c); a folded user sends q T_u, T_u the ridge map
    # q_u -> n_u over the trained users (lam 1)
    qs = bundle.query_vectors().astype(np.float64)
    g = qs.T @ qs
    tu = np.linalg.solve(g + np.trace(g) / len(g) * np.eye(len(g)), qs.T @ n)
    part = {0: ((n[2] + n[5]) / np.sqrt(2)).reshape(shape),
            2: ((n[1] + 3.0 * (q @ tu)[0]) / 2.0).reshape(shape)}
    # the id node X^id = t^id W, W the ridge map t_i^id -> X_i^id over the catalogue (lam 0.01
    # of tr / d), t_i^id = r_i^id - X_i^id / (L+1); it enters the model step as a node does:
    # X / (L+1) plus its share of the item hop, sum_m a^id_m / k
    idc, info = bundle.channels.index("id"), bundle.manifest.fold_in
    x = np.asarray(bundle.arrays["foldin_state"][:, idc], np.float64)
    t = np.asarray(bundle.arrays[ITEM_EDGES][:, idc], np.float64) - info.self_scale * x
    g = t.T @ t
    w = np.linalg.solve(g + 0.01 * np.trace(g) / len(g) * np.eye(len(g)), t.T @ x)
    k = min(info.knn_k, bundle.n_items + 1)
    share = info.self_scale + sum(info.graphs["id"].values()) / k
    model = plain.model_embeddings.astype(np.float64)
    for j in (0, 2):
        want = model[j] + part[j]
        want[idc] += share * (part[j][idc] @ w)
        np.testing.assert_allclose(folded.embeddings[j], want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(folded.model_embeddings[j], want - part[j], rtol=1e-4,
                                   atol=1e-5)
    # no posted user: the features-only fold (the neighbours' imputed edges)
    np.testing.assert_array_equal(folded.embeddings[1], plain.embeddings[1])
    np.testing.assert_array_equal(folded.interactions, [2, 0, 2])
    assert plain.interactions is None
    v = folded.embeddings * folded.weights[:, :, None]
    np.testing.assert_allclose(folded.vectors, v.reshape(3, -1), rtol=1e-6)
    np.testing.assert_array_equal(folded.weights, plain.weights)  # w from the same prior


def test_posted_users_are_checked(tiny, trained):
    feats = {mm: tiny.features[mm][[3, 11]] for mm in ("image", "text")}
    ok = ItemUsers(np.array([1]))
    with pytest.raises(FoldInInputError, match="item 1: user row 9999") as err:
        fold_in_items(trained, feats, users=[ok, ItemUsers(np.array([9999]))])
    assert err.value.item == 1
    with pytest.raises(FoldInInputError, match="one entry per item"):
        fold_in_items(trained, feats, users=[ok])
    with pytest.raises(FoldInInputError, match="weights"):
        fold_in_items(trained, feats, users=[ok, ItemUsers(np.array([1]), weights=[-1.0])])
    with pytest.raises(FoldInInputError, match="user_vectors"):
        fold_in_items(trained, feats, users=[ok, ItemUsers(np.array([1]),
                                                           user_vectors=np.ones((1, 3)))])


def test_the_bundle_carries_n_or_refuses_it(trained, tmp_path):
    bundle = trained
    raw = json.loads((bundle.path / MANIFEST).read_text())
    arrays = dict(bundle.arrays)
    # written with the bundle: read back, same n
    loaded = load_bundle(write_bundle(tmp_path / "with", manifest=raw, arrays=arrays,
                                      user_ids=bundle.user_ids, item_ids=bundle.item_ids))
    np.testing.assert_array_equal(loaded.arrays[USER_OUT], arrays[USER_OUT])
    assert has_user_out(loaded)
    with pytest.raises(BundleError, match=f"{USER_OUT}.npy: shape"):
        write_bundle(tmp_path / "short", manifest=raw, user_ids=bundle.user_ids,
                     item_ids=bundle.item_ids, arrays={**arrays, USER_OUT: arrays[USER_OUT][1:]})
    no_prop = {k: v for k, v in arrays.items() if k not in (USER_SELF, USER_MSG, ITEM_EDGES)}
    with pytest.raises(BundleError, match="without the propagation parts"):
        write_bundle(tmp_path / "alone", manifest=raw, arrays=no_prop,
                     user_ids=bundle.user_ids, item_ids=bundle.item_ids)
    # an export without n still loads, and says why items cannot fold from interactions
    old = load_bundle(write_bundle(tmp_path / "old", manifest=raw, user_ids=bundle.user_ids,
                                   item_ids=bundle.item_ids,
                                   arrays={k: v for k, v in arrays.items() if k != USER_OUT}))
    assert not has_user_out(old)
    feats = {mm: np.zeros((1, old.arrays[f"foldin_knn_{mm}"].shape[1])) for mm in ("image",
                                                                                  "text")}
    with pytest.raises(FoldInUnavailable, match=USER_OUT):
        fold_in_items(old, feats, users=[ItemUsers(np.array([0]))])
    fold_in_items(old, feats)  # features only: unchanged
    with pytest.raises(FoldInInputError, match="user rows"):
        user_out_from_graph(old, np.array([[old.n_users, 0]]))


def test_a_catalogue_item_with_new_users_by_hand(tiny, trained):
    """update_items: the item's training users' messages plus the new ones, over the square
    root of its new degree; the rest of its embedding (content, hop, id node) kept."""
    bundle = trained
    n = np.asarray(bundle.arrays[USER_OUT], np.float64).reshape(bundle.n_users, -1)
    e = np.asarray(bundle.arrays["item_emb"], np.float64).reshape(bundle.n_items, -1)
    pairs = np.unique(tiny.train[:, :2], axis=0)
    deg = np.bincount(pairs[:, 1], minlength=bundle.n_items)
    np.testing.assert_array_equal(bundle.arrays["item_pos_count"], deg)  # distinct pairs
    edges = ItemEdges.from_bundle(bundle)
    t = edges.trained_edges()
    items = np.array([4, 17])
    old = [pairs[pairs[:, 1] == i, 0] for i in items]
    new = [np.setdiff1d(np.arange(bundle.n_users), o)[:3] for o in old]
    got = edges.update_items(items, [ItemUsers(new[0]),
                                     ItemUsers(new[1], weights=np.array([1.0, 2.0, 0.0]))])
    want0 = e[4] - t[4] + (n[old[0]].sum(0) + n[new[0]].sum(0)) / np.sqrt(deg[4] + 3)
    c = np.array([1.0, 2.0, 0.0])
    want1 = e[17] - t[17] + (n[old[1]].sum(0) + c @ n[new[1]]) / np.sqrt(deg[17] + 3)
    np.testing.assert_allclose(got.reshape(2, -1), np.stack([want0, want1]), rtol=1e-4,
                               atol=1e-5)
    # no new user: the trained embedding
    same = edges.update_items(items[:1], [ItemUsers(np.empty(0, np.int64))])
    np.testing.assert_allclose(same.reshape(-1), e[4], rtol=1e-5, atol=1e-5)
    with pytest.raises(FoldInInputError, match="item_rows"):
        edges.update_items(np.array([bundle.n_items]), [ItemUsers(new[0])])


def test_the_served_update_is_update_items_by_row(trained):
    """updated_catalogue (what the service serves and bench/freshness.py evaluates): the rows
    with any user, ascending, each with update_items; trained_edges of some rows is theirs."""
    bundle = trained
    edges = ItemEdges.from_bundle(bundle)
    np.testing.assert_array_equal(edges.trained_edges(np.array([9, 2])),
                                  edges.trained_edges()[[9, 2]])
    q = np.asarray(bundle.query_vectors()[[7]], np.float32)  # a folded user's query
    posted = {9: ItemUsers(np.array([1, 3]), user_vectors=q), 2: ItemUsers(np.array([5])),
              4: ItemUsers(np.empty(0, np.int64))}
    rows, emb = updated_catalogue(bundle, posted)
    np.testing.assert_array_equal(rows, [2, 9])
    want = edges.update_items(np.array([2, 9]), [posted[2], posted[9]])
    np.testing.assert_array_equal(emb, want)
    assert emb.dtype == np.float32 and emb.shape == (2, *bundle.arrays["item_emb"].shape[1:])
    assert posted_users(posted[9]) == 3 and posted_users(posted[4]) == 0
    none, empty = updated_catalogue(bundle, {4: posted[4]})
    assert none.size == 0 and empty.shape == (0, *bundle.arrays["item_emb"].shape[1:])
