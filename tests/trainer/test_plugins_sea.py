"""SEA plug-in: Eqs. 15, 16, 30 by hand, the CLUB estimate, the feature transform, end to end."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from trainer.bundle import load_bundle
from trainer.config import TrainConfig
from trainer.errors import ConfigError
from trainer.export import export_model
from trainer.models import build_model
from trainer.plugins import StepContext, sea
from trainer.train import batch_loss, fit, param_groups

FAST = {"epochs": 2, "batch_size": 512, "lr": 0.01, "patience": 5}


def test_eq16_solosim_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # logits = I / tau: each row -log(e^(1/tau) / (e^(1/tau) + 1))
    for tau in (1.0, 0.5):
        want = math.log(1 + math.exp(-1 / tau))
        assert sea.solosim_loss(a, a, tau).item() == pytest.approx(want, rel=1e-6)


def test_solosim_is_one_directional_and_infonce_averages_both():
    a = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=-1)
    c = F.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0], [-1.0, 0.5]]), dim=-1)
    logits = a @ c.T / 0.2
    want_ac = -torch.log_softmax(logits, 1).diagonal().mean()
    want_ca = -torch.log_softmax(logits.T, 1).diagonal().mean()
    assert sea.solosim_loss(a, c, 0.2).item() == pytest.approx(want_ac.item(), rel=1e-6)
    assert want_ac.item() != pytest.approx(want_ca.item())
    both = sea.infonce_loss(a, c, 0.2).item()
    assert both == pytest.approx(0.5 * (want_ac + want_ca).item(), rel=1e-6)


def test_eq30_negative_l2_is_bounded_by_hand():
    x, y = torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.tensor([[0.0, 2.0], [-1.0, 0.0]])
    # normalised differences: (1, -1) -> 2 and (2, 0) -> 4; mean 3
    assert sea.neg_l2_distance(x, y).item() == pytest.approx(-3.0)
    assert sea.neg_l2_distance(x, x).item() == pytest.approx(0.0)


def _zero_estimator(dim=2):
    est = sea.ClubEstimator(dim, dim, 4)
    with torch.no_grad():  # mu(x) = 0, lv(x) = tanh(0.5 * 2) = tanh(1) for every x
        for lin in (est.mu[2], est.logvar[2]):
            lin.weight.zero_()
            lin.bias.zero_()
        est.logvar[2].bias.fill_(0.5)
    return est


def test_eq15_log_likelihood_and_bound_by_hand():
    est = _zero_estimator()
    lv = math.tanh(0.5)
    x = torch.tensor([[0.3, -1.0], [2.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [3.0, -1.0]])
    want = [-(1.0) / (2 * math.exp(lv)) - lv, -(9.0 + 1.0) / (2 * math.exp(lv)) - lv]
    assert est.log_likelihood(x, y).tolist() == pytest.approx(want, rel=1e-6)
    # q ignores x here, so the sampled bound over a permutation is 0 (and clamped at >= 0)
    assert sea.club_bound(est, x, y, torch.tensor([1, 0])).item() == pytest.approx(0.0, abs=1e-6)


def _club_estimate(x, y, seed=0):
    torch.manual_seed(seed)
    n = x.shape[0] // 2
    est = sea.fit_club(sea.ClubEstimator(x.shape[1], y.shape[1], 16), x[:n], y[:n], 400, 1e-2)
    with torch.no_grad():  # on held-out pairs, averaged over permutations
        vals = [
            0.5 * (est.log_likelihood(x[n:], y[n:]) - est.log_likelihood(x[n:], y[n:][p])).mean()
            for p in (torch.randperm(x.shape[0] - n) for _ in range(20))
        ]
    return float(torch.stack(vals).mean())


def test_club_near_zero_for_independent_and_positive_for_dependent_gaussians():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 4, generator=g)
    independent = _club_estimate(x, torch.randn(2000, 4, generator=g))
    dependent = _club_estimate(x, x + 0.1 * torch.randn(2000, 4, generator=g))
    assert abs(independent) < 0.1
    # true I(x; y) = 4 * 0.5 * ln(1 + 1/0.01) = 9.2 nats; CLUB upper-bounds it
    assert dependent > 5.0


def test_config_refusals():
    with pytest.raises(ConfigError, match="sea-distance"):
        TrainConfig(plugins=("sea",), sea_distance="mine").validate()
    with pytest.raises(ConfigError, match="sea-tau"):
        TrainConfig(plugins=("sea",), sea_tau=0.0).validate()
    with pytest.raises(ConfigError, match="multimodal"):
        TrainConfig(model="lightgcn", plugins=("sea",)).validate()


def _setup(tiny, **kw):
    cfg = TrainConfig(plugins=("sea",), **{**FAST, **kw}).validate()
    model = build_model(cfg, tiny)
    plugin = sea.SEAPlugin()
    plugin.setup(model, tiny, cfg, torch.device("cpu"), None)
    return cfg, model, plugin


def test_transform_starts_as_identity_and_folds_into_the_exported_projection(tiny):
    cfg, model, _ = _setup(tiny, model="margo", backbone="dragon")  # DRAGON's two-layer MLP
    f = model.features["image"]
    assert torch.allclose(model.content_feature("image", f), f)
    with torch.no_grad():  # a non-trivial transform, as after training
        t = model.feature_transform["image"]
        t.weight.add_(0.1 * torch.randn_like(t.weight))
        t.bias.add_(0.1)
    ex = model.export_extras()
    x = f[:5].numpy()
    h = x @ ex["proj_image_w1"].T + ex["proj_image_b1"]
    h = np.where(h > 0, h, 0.01 * h) @ ex["proj_image_w2"].T + ex["proj_image_b2"]
    want = model.proj["image"](model.content_feature("image", f[:5])).detach().numpy()
    np.testing.assert_allclose(h, want, atol=1e-4)


def test_gradients_reach_the_transform_but_not_the_estimator_optimiser(tiny):
    cfg, model, plugin = _setup(tiny, model="fusion-sum", sea_alpha=0.5, sea_beta=1.0)
    groups = param_groups(model, cfg.lr, None, [plugin])
    in_model_opt = {id(p) for g in groups for p in g["params"]}
    assert not any(id(p) in in_model_opt for p in plugin.club.parameters())
    assert all(id(p) in in_model_opt for p in plugin.heads.parameters())
    assert all(id(p) in in_model_opt for p in model.feature_transform.parameters())
    u, i, k = torch.arange(64) % tiny.n_users, torch.arange(64), torch.arange(64, 128)
    loss, stats = batch_loss(model, u, i, k, cfg, 0.0, [plugin], "I", True)
    assert "sea_align" in stats and "sea_dis" in stats
    loss.backward()
    assert model.feature_transform["image"].weight.grad.abs().sum() > 0
    before = [p.detach().clone() for p in plugin.club.parameters()]
    plugin.before_step()  # the CLUB inner steps move the estimator only
    after = list(plugin.club.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(p.grad is None for p in plugin.club.parameters())


def test_scope_batch_vs_full(tiny):
    for scope in ("batch", "full"):
        cfg, model, plugin = _setup(tiny, model="margo", sea_scope=scope)
        u, e = model.embeddings()
        pos, neg = torch.tensor([0, 1, 1]), torch.tensor([2, 3, 4])
        s = torch.zeros(3, 2)
        ctx = StepContext(model, "I", True, pos, pos, neg, u, e, s, s, None, None)
        loss, _ = plugin.loss(ctx)
        assert torch.isfinite(loss)
        n_rows = {"batch": 5, "full": tiny.n_items}[scope]
        assert plugin._pairs["image"][0].shape[0] == n_rows


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("fusion-sum", {}),
        ("fusion-learned", {"sea_distance": "neg-l2", "sea_align": "infonce"}),
        ("margo", {"sea_scope": "full"}),
        ("vbpr", {}),
    ],
)
def test_end_to_end_sea_exports_an_unchanged_bundle(model, extra, tiny, tmp_path):
    cfg = TrainConfig(model=model, plugins=("sea",), **FAST, **extra)
    result = fit(tiny, cfg, progress=False)
    assert all("sea_dis" in h.extra for h in result.history)  # every stage
    path = export_model(result, tiny, cfg.validate(), tmp_path / "b")
    b = load_bundle(path)
    assert b.manifest.training.export_check_max_abs_error < 1e-4
    assert b.channels == result.model.channels
    assert b.manifest.hyperparameters["plugins"] == ["sea"]
    assert not any(k.startswith("feature_transform") for k in b.arrays)


def test_ckd_and_sea_combined_with_a_shared_stage_one(tiny, tmp_path):
    cfg = TrainConfig(model="margo", plugins=("ckd", "sea"), **FAST)
    cache = tmp_path / "s1"
    a = fit(tiny, cfg, progress=False, stage1_cache=cache, plugin_cache=tmp_path / "t")
    first = a.history[0].extra
    assert "ckd" in first and "sea_dis" in first
    assert len(list(cache.glob("stage1-*.pt"))) == 1
    # a second run reuses stage I (with the plug-in heads) and reproduces the result
    b = fit(tiny, cfg, progress=False, stage1_cache=cache, plugin_cache=tmp_path / "t")
    assert [h.stage for h in b.history] == ["II"] * len(b.history)
    assert a.test == b.test
    # a full run with the teachers now from the cache is the very same run as ``a``
    c = fit(tiny, cfg, progress=False, plugin_cache=tmp_path / "t")
    assert c.test == a.test
    path = export_model(b, tiny, cfg.validate(), tmp_path / "b")
    assert load_bundle(path).manifest.training.export_check_max_abs_error < 1e-4


def test_losses_reuse_the_forward_pass_transform_exactly(tiny):
    cfg, model, plugin = _setup(tiny, model="margo", sea_club_steps=0)
    model.eval()  # BatchNorm in eval: both passes see the same statistics
    pos, neg = torch.tensor([0, 1, 1]), torch.tensor([2, 3, 4])
    s = torch.zeros(3, 2)
    u, e = model.embeddings()
    assert set(model.transformed) == {"image", "text"}
    ctx = StepContext(model, "I", True, pos, pos, neg, u, e, s, s, None, None)
    torch.manual_seed(0)
    reused, _ = plugin.loss(ctx)
    model.transformed = {}  # no forward pass on record: the plug-in computes T^m itself
    torch.manual_seed(0)
    own, _ = plugin.loss(ctx)
    assert reused.item() == pytest.approx(own.item(), rel=1e-5)
