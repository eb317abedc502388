"""The FREEDOM-style backbone: its pruning rule, equations F1-F4 by hand, every fusion on it."""

import numpy as np
import pytest
import torch

from trainer import graphs
from trainer.bundle import load_bundle
from trainer.config import TrainConfig
from trainer.data import load_dataset
from trainer.data.importers import import_synth
from trainer.export import export_model
from trainer.models import FreedomBackbone, build_model
from trainer.models.backbone import standardize_columns, unnormalised_reason
from trainer.train import fit, stage1_cache_path

FAST = {"epochs": 2, "batch_size": 512, "lr": 0.01, "patience": 5, "backbone": "freedom"}

# u0 - i0, u0 - i1, u0 - i2, u1 - i0 (the duplicate row counts once)
STAR = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [0, 1]])


def test_pruning_keeps_the_documented_number_of_edges_renormalised():
    rng = np.random.default_rng(0)
    a = graphs.degree_sensitive_pruning(2, 3, STAR, 0.5, rng)  # 4 distinct edges -> keep 2
    assert a.nnz == 2 * 2  # both directions of each kept edge
    dense = a.toarray()
    np.testing.assert_allclose(dense, dense.T)
    # renormalised with the KEPT degrees: every kept edge u-i has value 1/sqrt(d'_u d'_i)
    kept_deg = (dense > 0).sum(1)
    rows, cols = np.nonzero(dense)
    np.testing.assert_allclose(
        dense[rows, cols], 1 / np.sqrt(kept_deg[rows] * kept_deg[cols]), rtol=1e-6
    )
    full = graphs.degree_sensitive_pruning(2, 3, STAR, 0.0, rng).toarray()
    np.testing.assert_allclose(full, graphs.normalized_adjacency(2, 3, STAR).toarray())
    with pytest.raises(ValueError, match="prune_ratio"):
        graphs.degree_sensitive_pruning(2, 3, STAR, 1.0, rng)


def test_pruning_keeps_an_edge_with_probability_proportional_to_inverse_sqrt_degrees():
    # degrees: u0 3, u1 1, i0 2, i1 1, i2 1; keep int(4 * 0.25) = 1 edge per draw, so an
    # edge survives with probability w_e / sum(w), w = 1/sqrt(d_u d_i):
    # u0-i0 1/sqrt(6), u0-i1 1/sqrt(3), u0-i2 1/sqrt(3), u1-i0 1/sqrt(2)
    w = np.array([1 / np.sqrt(6), 1 / np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(2)])
    edges = [(0, 2), (0, 3), (0, 4), (1, 2)]  # (user node, item node) of the 5-node graph
    rng = np.random.default_rng(1)
    counts = np.zeros(4)
    n = 4000
    for _ in range(n):
        a = graphs.degree_sensitive_pruning(2, 3, STAR, 0.75, rng)
        counts += [a[r, c] > 0 for r, c in edges]
    assert counts.sum() == n
    np.testing.assert_allclose(counts / n, w / w.sum(), atol=0.025)
    # the edge between the two popular nodes is the likeliest to be pruned
    assert counts.argmin() == 0


def _hand_model(prune_ratio: float = 0.0) -> FreedomBackbone:
    """2 users, 2 items (u0-i0, u0-i1, u1-i1), one 2-d modality, d = 2, one layer."""
    train = np.array([[0, 0], [0, 1], [1, 1]])
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    model = FreedomBackbone(
        2,
        2,
        features={"text": feats},
        train=train,
        adj=graphs.SparseOp(graphs.normalized_adjacency(2, 2, train)),
        item_graphs=graphs.SparseOp(graphs.knn_graph(feats.numpy(), 2)),  # S = 0.5 everywhere
        dim=2,
        n_layers=1,
        prune_ratio=prune_ratio,
    )
    with torch.no_grad():
        model.proj["text"].weight.copy_(torch.eye(2))  # F1: X_I = F
        model.proj["text"].bias.zero_()
        model.preference.copy_(torch.tensor([[1.0, 1.0], [2.0, 0.0]]))
    return model


def test_freedom_equations_by_hand():
    with torch.no_grad():
        user, item = _hand_model().eval().embeddings()
    r = 1 / np.sqrt(2)
    # F3: A_hat[u0,i0] = r, A_hat[u0,i1] = 1/2, A_hat[u1,i1] = r; Z = (X0 + A_hat X0) / 2
    #   Z_u0 = ([1, 1] + r*[1, 0] + 0.5*[0, 1]) / 2, Z_u1 = ([2, 0] + r*[0, 1]) / 2
    expected_user = np.array([[(1 + r) / 2, 0.75], [1.0, r / 2]])
    # Z_i0 = ([1, 0] + r*[1, 1]) / 2, Z_i1 = ([0, 1] + 0.5*[1, 1] + r*[2, 0]) / 2
    # F4: + S X_I = [0.5, 0.5] for both items
    expected_item = np.array([[(1 + r) / 2 + 0.5, r / 2 + 0.5], [0.25 + r + 0.5, 0.75 + 0.5]])
    np.testing.assert_allclose(user[:, 0].numpy(), expected_user, rtol=1e-6)
    np.testing.assert_allclose(item[:, 0].numpy(), expected_item, rtol=1e-6)


def test_training_uses_the_pruned_graph_and_evaluation_the_full_one():
    model = _hand_model(prune_ratio=0.5)
    full = model.eval().embeddings()[0]
    model.train().start_epoch(np.random.default_rng(0))
    assert model.pruned is not None and model.pruned.csr.nnz == 2  # 1 of 3 edges, both ways
    pruned = model.embeddings()[0]
    assert not torch.allclose(pruned, full)
    torch.testing.assert_close(model.eval().embeddings()[0], full)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("training", [True, False])
def test_the_batch_forward_pass_equals_the_full_one_with_its_gradients(n_layers, training, tiny):
    """batch_embeddings (the graph's two blocks, the last user layer for the batch only) gives
    embeddings()'s rows of the batch's users and the same gradient for every parameter."""
    cfg = TrainConfig(backbone="freedom", id_channel=True, n_layers=n_layers, dim=8, seed=0)
    model = build_model(cfg, tiny).train(training)
    model.start_epoch(np.random.default_rng(0))
    users = torch.tensor([3, 0, 3, 7, 1])  # repeats: a user twice in one batch
    gen = torch.Generator().manual_seed(1)
    weights = torch.randn(len(users), len(model.channels), 8, generator=gen)

    def grads(user: torch.Tensor, item: torch.Tensor) -> dict[str, torch.Tensor]:
        model.zero_grad()
        ((user * weights).sum() + item.pow(2).sum()).backward()
        return {k: p.grad.clone() for k, p in model.named_parameters()}

    full_user, full_item = model.embeddings()
    full_grads = grads(full_user[users], full_item)
    batch_user, batch_item = model.batch_embeddings(users)
    torch.testing.assert_close(batch_user, full_user[users])
    torch.testing.assert_close(batch_item, full_item)
    for name, g in grads(batch_user, batch_item).items():
        torch.testing.assert_close(g, full_grads[name], msg=name)


def test_the_projection_of_fixed_features_has_nn_linears_gradient():
    from trainer.models import fixed_linear

    torch.manual_seed(0)
    lin, x = torch.nn.Linear(6, 3), torch.randn(5, 6)
    project = fixed_linear.FixedInputProjection()
    (lin(x).pow(2).sum()).backward()
    expected = lin.weight.grad.clone(), lin.bias.grad.clone()
    lin.zero_grad()
    out = project(lin, x)
    torch.testing.assert_close(out, lin(x))
    out.pow(2).sum().backward()
    torch.testing.assert_close((lin.weight.grad, lin.bias.grad), expected)
    assert project(lin, x) is not None and len(project._held) == 1  # x^T made once
    with torch.no_grad():  # evaluation: the plain layer, nothing cached for a new input
        torch.testing.assert_close(project(lin, x + 1), lin(x + 1))
    assert project._held[id(lin)][0] is x


@pytest.mark.parametrize("model", ["fusion-sum", "fusion-learned", "margo"])
def test_every_fusion_on_freedom_exports_the_scoring_identity(model, tiny, tmp_path):
    cfg = TrainConfig(model=model, id_channel=True, **FAST)
    result = fit(tiny, cfg, progress=False)
    assert result.model.channels == ["image", "text", "id"]
    b = load_bundle(export_model(result, tiny, cfg, tmp_path / model))
    assert b.manifest.training.export_check_max_abs_error < 1e-4
    # the bundle's q_u . v_i is the model's own fused score sum_m w_i^m (e_u^m . e_i^m)
    result.model.eval()
    with torch.no_grad():
        user, item = result.model.embeddings()
        per_channel = torch.einsum("umd,imd->uim", user, item)
        w = result.model.fusion_weights()
        score = per_channel.sum(-1) if w is None else (per_channel * w[None]).sum(-1)
    np.testing.assert_allclose(b.query_vectors() @ b.item_vectors().T, score.numpy(), atol=1e-4)
    # cold start: the exported linear map reproduces each content channel's layer-0 node F1
    nodes = result.model.item_nodes().detach().numpy()
    for c, m in enumerate(["image", "text"]):
        x = tiny.features[m] @ b.arrays[f"proj_{m}_w1"].T + b.arrays[f"proj_{m}_b1"]
        np.testing.assert_allclose(x, nodes[:, c], atol=1e-5)
    assert "user_graph_indptr" not in b.arrays  # FREEDOM has no user-user graph


def test_freedom_is_reproducible_and_cached_stage_one_is_keyed_by_backbone(tiny, tmp_path):
    a = fit(tiny, TrainConfig(model="margo", seed=3, **FAST), progress=False)
    b = fit(tiny, TrainConfig(model="margo", seed=3, **FAST), progress=False)
    assert a.test == b.test
    assert isinstance(build_model(TrainConfig(model="margo"), tiny), FreedomBackbone)  # default
    dragon = TrainConfig(model="margo", backbone="dragon")
    assert not isinstance(build_model(dragon, tiny), FreedomBackbone)
    # fusion-sum / margo of one backbone share a stage I; the two backbones never do
    key = {**FAST, "backbone": "dragon"}
    f = stage1_cache_path(tmp_path, TrainConfig(model="margo", **FAST), tiny)
    assert f == stage1_cache_path(tmp_path, TrainConfig(model="fusion-sum", **FAST), tiny)
    assert f != stage1_cache_path(tmp_path, TrainConfig(model="margo", **key), tiny)


@pytest.mark.slow
def test_freedom_margo_end_to_end_beats_popularity(tiny, tmp_path):
    """A full run (early stopping, both stages, export) on the tiny planted dataset."""
    cfg = TrainConfig(
        model="margo", backbone="freedom", epochs=40, batch_size=512, lr=0.01, patience=10
    )
    result = fit(tiny, cfg, progress=False)
    b = load_bundle(export_model(result, tiny, cfg, tmp_path / "e2e"))
    assert b.manifest.training.export_check_max_abs_error < 1e-4
    # most-popular ranking of the same test users, training items masked
    pop = np.bincount(tiny.train[:, 1], minlength=tiny.n_items).astype(float)
    hits, total = 0.0, 0
    for u in np.unique(tiny.test[:, 0]):
        seen = set(tiny.train[tiny.train[:, 0] == u, 1])
        ranked = [i for i in np.argsort(-pop, kind="stable") if i not in seen][:20]
        truth = set(tiny.test[tiny.test[:, 0] == u, 1])
        hits += len(truth & set(ranked)) / len(truth)
        total += 1
    assert result.test["recall@20"] > hits / total + 0.05


def test_standardize_columns_by_hand():
    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 6.0]])
    out, mu, s = standardize_columns(x)
    # mu [2, 5, 4], sigma [1, 0, 2], d = 3: s = [1/sqrt(3), 0 (constant column), 1/(2 sqrt(3))]
    np.testing.assert_allclose(mu, [2, 5, 4])
    np.testing.assert_allclose(s, [1 / np.sqrt(3), 0, 1 / (2 * np.sqrt(3))], rtol=1e-6)
    r = 1 / np.sqrt(3)
    np.testing.assert_allclose(out, [[-r, 0, -r], [r, 0, r]], rtol=1e-6)


def test_auto_feature_norm_rule_by_hand():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 20)) / np.sqrt(20)  # unit-ish rows, one column scale
    assert unnormalised_reason(x) is None
    assert unnormalised_reason(x * 1e3).startswith("row norm ")  # only the scale is off
    spread = x * np.logspace(-2, 2, 20)  # column scales over 4 orders of magnitude
    assert unnormalised_reason(spread).startswith("column-std spread")
    assert "column offset" in unnormalised_reason(x + 20 * x.std(0))  # 20 stds off zero
    assert unnormalised_reason(np.ones((5, 3))) is None  # constant: nothing to standardise


def test_auto_feature_norm_keeps_normalised_features_and_standardises_raw_ones(tiny, tmp_path):
    auto = build_model(TrainConfig(model="fusion-sum", feature_norm="auto", **FAST), tiny)
    assert auto.input_affine == {}  # the synthetic default features are left as given
    for m, f in tiny.features.items():
        np.testing.assert_array_equal(auto.features[m].numpy(), f)
    raw = load_dataset(import_synth(
        tmp_path / "raw", n_users=300, n_items=200, n_interactions=6000,
        modalities={"image": 48, "text": 32}, unnormalised=True, seed=1, progress=False,
    ))  # fmt: skip
    auto = build_model(TrainConfig(model="fusion-sum", feature_norm="auto", **FAST), raw)
    std = build_model(TrainConfig(model="fusion-sum", feature_norm="standardize", **FAST), raw)
    assert set(auto.input_affine) == {"image", "text"}
    for m in raw.features:
        torch.testing.assert_close(auto.features[m], std.features[m])
    # a stage-I state is shared with the feature_norm auto resolves to (the same run)
    key = {n: stage1_cache_path(tmp_path, TrainConfig(feature_norm=n), tiny)
           for n in ("auto", "none", "standardize")}  # fmt: skip
    assert key["auto"] == key["none"] != key["standardize"]


@pytest.mark.parametrize("backbone", ["dragon", "freedom"])
def test_standardised_features_fold_into_the_cold_start_projection(backbone, tiny):
    cfg = TrainConfig(model="fusion-sum", backbone=backbone, feature_norm="standardize", epochs=1)
    model = build_model(cfg, tiny)
    extras = model.export_extras()
    for m in ("image", "text"):
        first = model.proj[m].lin1 if backbone == "dragon" else model.proj[m]
        with torch.no_grad():
            expected = first(model.features[m]).numpy()  # the layer on the standardised rows
        raw = tiny.features[m] @ extras[f"proj_{m}_w1"].T + extras[f"proj_{m}_b1"]
        np.testing.assert_allclose(raw, expected, atol=1e-4)
        col_std = float(model.features[m].std(0, unbiased=False).mean())
        assert abs(col_std - 1 / np.sqrt(tiny.features[m].shape[1])) < 1e-3


@pytest.mark.parametrize("plugins", [("ckd",), ("sea",)])
def test_plugins_train_and_export_on_freedom(plugins, tiny, tmp_path):
    cfg = TrainConfig(model="margo", id_channel=True, plugins=plugins, **FAST)
    result = fit(tiny, cfg, progress=False, plugin_cache=tmp_path / "cache")
    b = load_bundle(export_model(result, tiny, cfg, tmp_path / "b"))
    assert b.channels == ["image", "text", "id"]
    assert b.manifest.training.export_check_max_abs_error < 1e-4
