"""Item fold-in (trainer/foldin/items.py): a new item's vector is the model's own forward pass."""

import dataclasses
import gc
import json
import weakref

import numpy as np
import pytest
import torch

from trainer.bundle import ModelBundle, load_bundle, write_bundle
from trainer.config import TrainConfig
from trainer.data.dataset import load_dataset
from trainer.data.importers import import_synth
from trainer.errors import BundleError
from trainer.export import export_model
from trainer.foldin import FoldInInputError, FoldInUnavailable, ItemFoldIn, fold_in_items
from trainer.knn import (
    knn_graph,
    l2_normalize,
    nearest_rows,
    nearest_rows_prefiltered,
    search_arrays,
)
from trainer.manifest import MANIFEST
from trainer.train import fit

COLD = 7  # the item with features and no interaction at all
FAST = {"epochs": 1, "batch_size": 512, "lr": 0.01, "patience": 5, "hidden": 32, "dim": 16}
ITEM_ARRAYS = ("item_emb", "item_weights", "item_pos_count", "item_popularity", "foldin_")


@pytest.fixture(scope="module")
def cold(tiny):
    """``tiny`` with every interaction of item COLD removed (it keeps its features)."""

    def keep(pairs):
        return pairs[pairs[:, 1] != COLD]

    return dataclasses.replace(
        tiny, train=keep(tiny.train), valid=keep(tiny.valid), test=keep(tiny.test)
    )


def without_item(bundle: ModelBundle, row: int) -> ModelBundle:
    """The bundle's catalogue minus item ``row`` (every per-item array loses that row)."""
    keep = np.arange(bundle.n_items) != row
    arrays = {
        k: (v[keep] if k.startswith(ITEM_ARRAYS) and v.shape[0] == bundle.n_items else v)
        for k, v in bundle.arrays.items()
    }
    ids = [i for n, i in enumerate(bundle.item_ids) if n != row]
    return dataclasses.replace(bundle, item_ids=ids, arrays=arrays, _item_index={})


def reference_item(model, row: int) -> np.ndarray:
    """The model's forward pass for item ``row`` [M, d], its id embedding (if any) zeroed:
    a new item has none, so this is the forward pass fold-in reproduces."""
    model.eval()
    with torch.no_grad():
        if model.item_id is not None:
            model.item_id[row] = 0.0
        return model.embeddings()[1][row].numpy()


CASES = {
    "dragon-mixed": {"backbone": "dragon"},
    "dragon-id-per-channel-standardized": {
        "backbone": "dragon", "id_channel": True, "per_channel_graph": True,
        "feature_norm": "standardize",
    },
    "freedom-mixed-standardized": {"backbone": "freedom", "feature_norm": "standardize"},
    "freedom-id-per-channel": {"backbone": "freedom", "id_channel": True,
                               "per_channel_graph": True},
    "dragon-id-weights": {"backbone": "dragon", "id_channel": True, "knn_k": 4,
                          "graph_weights": {"image": 0.3, "text": 0.7}},
}


@pytest.mark.parametrize("case", list(CASES))
def test_new_item_equals_the_models_forward_pass(case, cold, tmp_path):
    cfg = TrainConfig(model="fusion-sum", seed=2, **FAST, **CASES[case])
    result = fit(cold, cfg, progress=False)
    bundle = load_bundle(export_model(result, cold, cfg, tmp_path / "b"))
    info = bundle.manifest.fold_in
    assert info is not None and info.knn_k == cfg.knn_k
    assert bundle.arrays["foldin_knn_image"].dtype == np.float16
    catalogue = without_item(bundle, COLD)
    feats = {m: cold.features[m][COLD] for m in ("image", "text")}
    folded = fold_in_items(catalogue, feats, placement="model")

    # its neighbours are D5's kNN graph row of the item (itself dropped), as training built it
    raw = result.model.features
    for m in ("image", "text"):
        graph_row = set(knn_graph(raw[m].numpy(), cfg.knn_k)[COLD].indices) - {COLD}
        found = {int(r) + (r >= COLD) for r in folded.neighbours[m][0]}  # back to full rows
        assert found == graph_row, m

    ref = reference_item(result.model, COLD)
    assert folded.embeddings.shape == (1, len(bundle.channels), cfg.dim)
    np.testing.assert_allclose(folded.embeddings[0], ref, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(folded.weights, 1.0)  # fusion-sum: w = 1
    np.testing.assert_allclose(folded.vectors, folded.embeddings.reshape(1, -1))
    # the default adds the neighbours' edge parts to that step (FREEDOM bundles carry them,
    # trainer/foldin/propagation.py) or calibrates it; the step itself is kept beside it
    default = fold_in_items(catalogue, feats)
    want = "edges" if cfg.backbone == "freedom" else "content"
    assert default.placement == want and folded.placement == "model"
    np.testing.assert_array_equal(default.model_embeddings, folded.embeddings)


def test_weight_prior_is_the_neighbours_mean_weight_by_hand(cold, tmp_path):
    cfg = TrainConfig(model="margo", seed=2, **FAST, id_channel=True)
    result = fit(cold, cfg, progress=False)
    bundle = without_item(load_bundle(export_model(result, cold, cfg, tmp_path / "b")), COLD)
    feats = {m: cold.features[m][[COLD, COLD + 1]] for m in ("image", "text")}
    folded = fold_in_items(bundle, feats)
    w = bundle.arrays["item_weights"]
    # abar: the channels' mean graph mixing, default 0.1 image + 0.9 text for every channel
    nb = folded.neighbours
    expect = 0.1 * w[nb["image"]].mean(1) + 0.9 * w[nb["text"]].mean(1)
    np.testing.assert_allclose(folded.weights, expect, rtol=1e-5)
    np.testing.assert_allclose(folded.weights.sum(1), bundle.manifest.weight_scale, rtol=1e-5)
    v = folded.embeddings * folded.weights[:, :, None]
    np.testing.assert_allclose(folded.vectors, v.reshape(2, -1), rtol=1e-6)
    cat = fold_in_items(bundle, feats, weight_prior="catalogue")
    np.testing.assert_allclose(cat.weights, np.broadcast_to(w.mean(0), (2, 3)), rtol=1e-5)
    np.testing.assert_array_equal(cat.embeddings, folded.embeddings)


def test_a_batch_folds_like_single_items_and_the_precomputation_is_cached(cold, tmp_path):
    cfg = TrainConfig(model="fusion-sum", seed=2, **FAST)
    bundle = load_bundle(export_model(fit(cold, cfg, progress=False), cold, cfg, tmp_path / "b"))
    rows = [3, COLD, 50]
    batch = fold_in_items(bundle, {m: cold.features[m][rows] for m in ("image", "text")})
    for n, r in enumerate(rows):
        one = fold_in_items(bundle, {m: cold.features[m][r] for m in ("image", "text")})
        np.testing.assert_allclose(one.embeddings[0], batch.embeddings[n], rtol=1e-5, atol=1e-6)
        assert one.neighbours["text"][0].tolist() == batch.neighbours["text"][n].tolist()
    folder = ItemFoldIn.from_bundle(bundle)
    assert ItemFoldIn.from_bundle(bundle) is folder and folder.bundle is bundle
    # the cache holds the bundle weakly: a released bundle takes its entry with it
    other = dataclasses.replace(bundle, _item_index={})
    ref = weakref.ref(ItemFoldIn.from_bundle(other))
    del other
    gc.collect()
    assert ref() is None
    # a streamed float16 catalogue (no float32 copy) finds the same neighbours
    streamed = ItemFoldIn(bundle, exact_bytes=0, cache_bytes=0)  # no prefilter: float16 scan
    assert streamed.knn["image"].dtype == np.float16 and streamed.search["image"] == "scan"
    again = streamed.fold_in({m: cold.features[m][rows] for m in ("image", "text")})
    np.testing.assert_array_equal(again.neighbours["image"], batch.neighbours["image"])


@pytest.fixture(scope="module")
def small_bundle(cold, tmp_path_factory):
    cfg = TrainConfig(model="fusion-sum", seed=2, **FAST)
    out = tmp_path_factory.mktemp("foldin") / "b"
    return load_bundle(export_model(fit(cold, cfg, progress=False), cold, cfg, out))


@pytest.mark.parametrize(
    ("features", "match", "item", "modality"),
    [
        ({"image": np.zeros((1, 48))}, "modality 'text': features missing", None, "text"),
        ({"image": np.zeros((1, 47)), "text": np.zeros((1, 32))}, "expected 48 values", None,
         "image"),
        ({"image": np.zeros((2, 48)), "text": np.zeros((3, 32))}, "3 items", None, "text"),
        ({"image": np.zeros((1, 48)), "text": np.zeros((1, 32)), "audio": np.zeros((1, 4))},
         "'audio' is not one of", None, "audio"),
        ({"image": np.array([[0.0] * 48, [np.nan] + [0.0] * 47]), "text": np.zeros((2, 32))},
         "item 1, modality 'image': features contain NaN", 1, "image"),
        ({"image": np.zeros((1, 48)), "text": [[np.inf] * 32]}, "item 0, modality 'text'", 0,
         "text"),
        ({"image": [["a"] * 48], "text": np.zeros((1, 32))}, "not numeric", None, "image"),
    ],
)
def test_bad_features_name_the_item_and_modality(small_bundle, features, match, item, modality):
    with pytest.raises(FoldInInputError, match=match) as err:
        fold_in_items(small_bundle, features)
    assert isinstance(err.value, ValueError)
    assert (err.value.item, err.value.modality) == (item, modality)


def test_bundles_without_fold_in_state_say_so(small_bundle, cold, tmp_path):
    # an older format: the same bundle's manifest as format 2, without the fold_in record
    raw = small_bundle.manifest.to_dict()
    raw.update(format_version=2, fold_in=None)
    old = dataclasses.replace(small_bundle, manifest=type(small_bundle.manifest).from_dict(raw))
    with pytest.raises(FoldInUnavailable, match="format 2 predates fold-in"):
        fold_in_items(old, {"image": np.zeros(48), "text": np.zeros(32)})
    # a model without a feature graph (BPR-MF) exports none
    cfg = TrainConfig(model="bpr", **FAST)
    bpr = load_bundle(export_model(fit(cold, cfg, progress=False), cold, cfg, tmp_path / "bpr"))
    assert bpr.manifest.fold_in is None and not any(k.startswith("foldin_") for k in bpr.arrays)
    with pytest.raises(FoldInUnavailable, match="'bpr' was exported without fold-in"):
        fold_in_items(bpr, {"image": np.zeros(48)})


def test_the_reader_refuses_a_fold_in_record_without_its_arrays(small_bundle, tmp_path):
    arrays = {k: v for k, v in small_bundle.arrays.items() if k != "foldin_state"}
    raw = json.loads((small_bundle.path / MANIFEST).read_text())
    with pytest.raises(BundleError, match="fold_in record without foldin_state.npy"):
        write_bundle(tmp_path / "x", manifest=raw, arrays=arrays,
                     user_ids=small_bundle.user_ids, item_ids=small_bundle.item_ids)
    raw.pop("fold_in")
    with pytest.raises(BundleError, match="without a fold_in record"):
        write_bundle(tmp_path / "y", manifest=raw, arrays=dict(small_bundle.arrays),
                     user_ids=small_bundle.user_ids, item_ids=small_bundle.item_ids)


def test_the_prefilter_search_reranks_exactly_and_finds_low_rank_neighbours():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 128)) + 0.05 * rng.normal(size=(400, 128))
    rows = l2_normalize(x).astype(np.float16)
    pre = search_arrays(rows)
    assert pre["basis"].shape == (128, 64) and pre["low"].shape == (400, 64)
    np.testing.assert_allclose(pre["basis"].T @ pre["basis"], np.eye(64), atol=1e-4)
    q = l2_normalize(rng.normal(size=(5, 8)) @ rng.normal(size=(8, 128)))
    full = nearest_rows(q, rows, 9)
    every = nearest_rows_prefiltered(q, rows, 9, n_candidates=400, **pre)  # all re-ranked
    np.testing.assert_array_equal(every[0], full[0])
    np.testing.assert_allclose(every[1], full[1], rtol=1e-5)
    few = nearest_rows_prefiltered(q, rows, 9, n_candidates=40, **pre)
    np.testing.assert_array_equal(few[0], full[0])  # rank-8 data: the prefilter is exact
    assert search_arrays(rows[:, :64]) is None  # not wider than the rank: a full scan


def test_wide_features_export_the_prefilter_and_search_it(tmp_path):
    data = load_dataset(import_synth(
        tmp_path / "wide", n_users=80, n_items=90, n_interactions=1500,
        modalities={"image": 96, "text": 16}, seed=4, progress=False,
    ))
    cfg = TrainConfig(model="fusion-sum", seed=2, **FAST)
    bundle = load_bundle(export_model(fit(data, cfg, progress=False), data, cfg, tmp_path / "b"))
    assert bundle.manifest.fold_in.search_rank == 64
    assert bundle.arrays["foldin_basis_image"].shape == (96, 64)
    assert bundle.arrays["foldin_low_image"].shape == (90, 64)
    assert "foldin_basis_text" not in bundle.arrays  # 16-d: scanned in full
    feats = {m: data.features[m][:4] for m in ("image", "text")}
    exact = ItemFoldIn(bundle, search="exact").fold_in(feats)
    pre = ItemFoldIn(bundle, search="prefilter").fold_in(feats)
    assert pre.search == {"image": "prefilter", "text": "scan"} and exact.search["image"] == "exact"
    auto = ItemFoldIn(bundle, exact_bytes=90 * 96 * 4 - 1)  # image rows just past the limit
    assert auto.search == {"image": "prefilter", "text": "exact"}
    # 90 rows < 512 candidates: every row is re-ranked, so the prefilter is exact here
    np.testing.assert_array_equal(pre.neighbours["image"], exact.neighbours["image"])
    np.testing.assert_allclose(pre.embeddings, exact.embeddings, rtol=1e-5, atol=1e-6)


def test_content_placement_is_the_ridge_map_at_the_neighbours_norms(cold, tmp_path):
    cfg = TrainConfig(model="margo", seed=2, **FAST, id_channel=True)
    result = fit(cold, cfg, progress=False)
    bundle = without_item(load_bundle(export_model(result, cold, cfg, tmp_path / "b")), COLD)
    feats = {m: cold.features[m][[COLD, COLD + 1]] for m in ("image", "text")}
    folded = fold_in_items(bundle, feats, placement="content")  # FREEDOM's default: edges
    model = fold_in_items(bundle, feats, placement="model")
    assert folded.placement == "content"
    np.testing.assert_array_equal(folded.model_embeddings, model.embeddings)
    np.testing.assert_array_equal(folded.weights, model.weights)  # the weight prior is unchanged
    # by hand: content = the unit kNN rows (features <= 64 wide: no basis), ridge lam 1 onto
    # the trained item_emb; norms 0.8 x the similarity-weighted neighbours' norms (image 48-d,
    # text 32-d)
    x = np.concatenate([np.asarray(bundle.arrays[f"foldin_knn_{m}"], np.float64)
                        for m in ("image", "text")], 1)
    e = np.asarray(bundle.arrays["item_emb"], np.float64)
    xc, ybar = x - x.mean(0), e.reshape(len(e), -1).mean(0)
    g = xc.T @ xc
    ridge = g + np.trace(g) / len(g) * np.eye(len(g))
    w = np.linalg.solve(ridge, xc.T @ (e.reshape(len(e), -1) - ybar))
    q = np.concatenate([l2_normalize(feats[m]) for m in ("image", "text")], 1)
    pred = ((q - x.mean(0)) @ w + ybar).reshape(2, 3, -1)
    rows = np.concatenate([folded.neighbours[m] for m in ("image", "text")], 1)
    s = np.maximum(np.concatenate([folded.similarity[m] for m in ("image", "text")], 1), 0)
    norms = np.linalg.norm(e, axis=2)[rows]
    target = 0.8 * np.einsum("nk,nkc->nc", s / s.sum(1, keepdims=True), norms)
    # item COLD has no near duplicate (its best cosine agreement over both modalities < 0.9)
    agree = np.min([x[:, :48][rows[0]] @ q[0, :48], x[:, 48:][rows[0]] @ q[0, 48:]], axis=0)
    assert agree.max() < 0.9
    np.testing.assert_allclose(np.linalg.norm(folded.embeddings[0], axis=1), target[0], rtol=1e-4)
    unit = pred[0] / np.linalg.norm(pred[0], axis=1, keepdims=True)
    np.testing.assert_allclose(folded.embeddings[0], unit * target[0][:, None], rtol=1e-3,
                               atol=1e-5)
    # item COLD + 1 is in the catalogue (row COLD after the removal): folded again, it is its
    # own near duplicate and lands on its trained embedding (up to the float16 kNN rows)
    np.testing.assert_allclose(folded.embeddings[1], e[COLD], rtol=1e-2, atol=1e-2)
    v = folded.embeddings * folded.weights[:, :, None]
    np.testing.assert_allclose(folded.vectors, v.reshape(2, -1), rtol=1e-6)
    with pytest.raises(FoldInInputError, match="placement must be auto, edges, content or model"):
        fold_in_items(bundle, feats, placement="learned")
