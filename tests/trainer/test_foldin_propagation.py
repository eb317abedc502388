"""Fold-in through FREEDOM's propagation (trainer/foldin/propagation.py) by hand."""

import json

import numpy as np
import pytest
import torch

from trainer.bundle import load_bundle, write_bundle
from trainer.bundle_foldin import ITEM_EDGES, PROPAGATION, USER_MSG, USER_SELF
from trainer.config import TrainConfig
from trainer.errors import BundleError
from trainer.export import export_model
from trainer.foldin import FoldInInputError, UserFoldIn, UserInput, fold_in_items, fold_in_user
from trainer.foldin.refresh import refresh
from trainer.graphs import SparseOp, normalized_adjacency
from trainer.manifest import MANIFEST
from trainer.train import fit

FAST = {"epochs": 1, "batch_size": 512, "lr": 0.01, "patience": 5, "hidden": 32, "dim": 16}


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """(model, bundle) of the default margo + id model on FREEDOM, one epoch."""
    cfg = TrainConfig(model="margo", backbone="freedom", id_channel=True, seed=4, **FAST)
    result = fit(tiny, cfg, progress=False)
    path = export_model(result, tiny, cfg, tmp_path_factory.mktemp("prop") / "b")
    return result.model, load_bundle(path)


def training_items(tiny, user: int) -> np.ndarray:
    return np.unique(tiny.train[tiny.train[:, 0] == user, 1])


def test_the_parts_rebuild_the_models_embeddings(tiny, trained):
    model, bundle = trained
    a = bundle.arrays
    assert all(n in a for n in PROPAGATION)
    dim = len(bundle.channels) * bundle.dim
    s, m = a[USER_SELF].reshape(-1, dim), a[USER_MSG].reshape(-1, dim)
    # e_u = s_u + sum_{i in N(u)} m_i / sqrt(|N(u)|): every user's trained vector
    for u in range(bundle.n_users):
        items = training_items(tiny, u)
        want = s[u] + m[items].sum(0) / np.sqrt(len(items))
        np.testing.assert_allclose(bundle.query_vectors()[u], want, rtol=1e-4, atol=1e-5)
    # e_i - r_i = X_i / (L + 1) (id node zeroed) + S X_i: all an item keeps without edges
    model.eval()
    with torch.no_grad():
        x = model.item_nodes()
        content = x.clone()
        content[:, bundle.channels.index("id")] = 0.0
        rest = (content / (model.n_layers + 1) + model._item_hop(x)).numpy()
    np.testing.assert_allclose(a["item_emb"] - a[ITEM_EDGES], rest, rtol=1e-4, atol=1e-5)


def test_propagate_fold_in_by_hand(tiny, trained):
    _, bundle = trained
    a = bundle.arrays
    dim = len(bundle.channels) * bundle.dim
    s, m = a[USER_SELF].reshape(-1, dim), a[USER_MSG].reshape(-1, dim)
    f = UserFoldIn.from_bundle(bundle)
    assert f.method == "propagate"
    u = 5
    items = training_items(tiny, u)
    # a known user with exactly their training items: their trained vector
    np.testing.assert_allclose(fold_in_user(bundle, items, user=u), bundle.query_vectors()[u],
                               rtol=1e-4, atol=1e-5)
    # two new items: the same sum over more items, over sqrt(n)
    new = np.setdiff1d(np.arange(bundle.n_items), items)[:2]
    rows = np.r_[items, new]
    want = s[u] + m[rows].sum(0) / np.sqrt(len(rows))
    np.testing.assert_allclose(fold_in_user(bundle, rows, user=u), want, rtol=1e-5, atol=1e-6)
    # a new user: no own share; confidences weight the messages, sqrt of their sum
    c = np.array([1.0, 3.0, 0.5])
    want = c @ m[[2, 9, 4]] / np.sqrt(c.sum())
    np.testing.assert_allclose(fold_in_user(bundle, np.array([2, 9, 4]), weights=c), want,
                               rtol=1e-5, atol=1e-6)
    # a folded item's message: v T, T the ridge map v_i -> m_i on the catalogue (lam 1)
    v = bundle.item_vectors().astype(np.float64)
    g = v.T @ v
    t = np.linalg.solve(g + np.trace(g) / dim * np.eye(dim), v.T @ m)
    extra = v[[7]] * 1.1
    want = (m[3] + (extra @ t)[0]) / np.sqrt(2)
    np.testing.assert_allclose(fold_in_user(bundle, np.array([3]), item_vectors=extra), want,
                               rtol=1e-4, atol=1e-5)
    # a prior without the user's row is the ridge's (as for a bundle without the parts)
    q = bundle.query_vectors()[u]
    ridge = UserFoldIn(bundle, method="ridge")
    np.testing.assert_allclose(fold_in_user(bundle, rows, prior=q),
                               ridge.fold_in(rows, prior=q), rtol=1e-6)
    # many users at once: the same rows
    users = [UserInput(rows, user=u), UserInput(np.array([2, 9, 4]), weights=c),
             UserInput(np.array([3]), item_vectors=extra), UserInput(rows, prior=q)]
    want = [f.fold_in(x.item_rows, item_vectors=x.item_vectors, weights=x.weights,
                      prior=x.prior, user=x.user) for x in users]
    np.testing.assert_allclose(f.fold_in_many(users), np.stack(want), rtol=1e-5, atol=1e-6)
    with pytest.raises(FoldInInputError, match="user row 9999"):
        fold_in_user(bundle, rows, user=9999)


def test_edges_placement_adds_the_neighbours_edge_parts_by_hand(tiny, trained):
    _, bundle = trained
    feats = {mm: tiny.features[mm][[3, 11]] for mm in ("image", "text")}
    folded = fold_in_items(bundle, feats)
    model = fold_in_items(bundle, feats, placement="model")
    assert folded.placement == "edges"
    np.testing.assert_array_equal(folded.model_embeddings, model.embeddings)
    r = np.asarray(bundle.arrays[ITEM_EDGES], np.float64)
    graphs = bundle.manifest.fold_in.graphs
    want = model.embeddings.astype(np.float64)
    for c, ch in enumerate(bundle.channels):  # S^c's mixing of the modalities, normalised
        total = sum(graphs[ch].values())
        for mm, a in graphs[ch].items():
            want[:, c] += a / total * r[folded.neighbours[mm], c].mean(1)
    np.testing.assert_allclose(folded.embeddings, want, rtol=1e-4, atol=1e-5)
    v = folded.embeddings * folded.weights[:, :, None]
    np.testing.assert_allclose(folded.vectors, v.reshape(2, -1), rtol=1e-6)


def test_the_reader_refuses_part_of_the_propagation_parts(trained, tmp_path):
    _, bundle = trained
    raw = json.loads((bundle.path / MANIFEST).read_text())
    arrays = {k: v for k, v in bundle.arrays.items() if k != USER_SELF}
    with pytest.raises(BundleError, match=f"fold_in record without {USER_SELF}.npy"):
        write_bundle(tmp_path / "x", manifest=raw, arrays=arrays,
                     user_ids=bundle.user_ids, item_ids=bundle.item_ids)


def test_graph_refresh_is_the_models_forward_pass_on_the_new_graph(tiny, trained):
    model, bundle = trained
    pairs = np.unique(tiny.train[:, :2], axis=0)
    # no new pairs: the bundle's own embeddings
    users, items = refresh(bundle, pairs, np.empty((0, 2), np.int64))
    np.testing.assert_allclose(users, bundle.arrays["user_emb"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items, bundle.arrays["item_emb"], rtol=1e-4, atol=1e-5)
    # new pairs: the torch model's embeddings with its graph rebuilt from all the pairs
    new = np.array([[0, 5], [0, 17], [3, 5], [250, 199]])
    users, items = refresh(bundle, pairs, new)
    old = model.adj
    model.adj = SparseOp(normalized_adjacency(model.n_users, model.n_items,
                                              np.concatenate([pairs, new])))
    try:
        model.eval()
        with torch.no_grad():
            eu, ei = model.embeddings()
    finally:
        model.adj = old
    np.testing.assert_allclose(users, eu.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(items, ei.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(items[5], bundle.arrays["item_emb"][5])  # item 5 moved
    with pytest.raises(FoldInInputError, match="user rows"):
        refresh(bundle, pairs, np.array([[bundle.n_users, 0]]))
