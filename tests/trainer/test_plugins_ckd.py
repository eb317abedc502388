"""CKD plug-in: Eqs. 11-18 against hand computations, teachers, caching, and end-to-end runs."""

import math

import numpy as np
import pytest
import torch

from trainer.bundle import load_bundle
from trainer.cli import build_parser, config_from_args
from trainer.config import TrainConfig
from trainer.errors import ConfigError
from trainer.export import export_model
from trainer.plugins import StepContext, ckd
from trainer.train import fit

FAST = {"epochs": 2, "batch_size": 512, "lr": 0.01, "patience": 5}


# -- the equations ------------------------------------------------------------------------------
def test_eq11_specific_loss_is_hinge_mean_and_teacher_gets_no_gradient():
    t = torch.tensor([2.0, 0.5, -1.0], requires_grad=True)
    s = torch.tensor([1.0, 1.0, -3.0], requires_grad=True)
    loss = ckd.specific_loss(t, s)
    assert loss.item() == pytest.approx((1.0 + 0.0 + 2.0) / 3)
    loss.backward()
    assert s.grad.tolist() == pytest.approx([-1 / 3, 0.0, -1 / 3])
    assert t.grad is None  # the teacher is a constant


def test_eq12_13_generic_loss_by_hand():
    tau = 0.1
    t, s = torch.tensor([0.1, -0.05]), torch.tensor([0.2, 0.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = 0.0
    for tg, sg in zip(t.tolist(), s.tolist(), strict=True):
        big_t, big_s = sig(tg / tau), sig(sg / tau)
        want += -(big_t * math.log(big_s) + (1 - big_t) * math.log(1 - big_s))
    assert ckd.generic_loss(t, s, tau).item() == pytest.approx(want / 2, rel=1e-5)
    # the target is a constant: with equal gaps the gradient is zero (minimum of the CE)
    s2 = t.clone().requires_grad_(True)
    ckd.generic_loss(t, s2, tau).backward()
    assert s2.grad.abs().max().item() < 1e-6


def test_eq15_18_modality_weights_by_hand_and_detached():
    delta = torch.tensor([[1.0, 3.0], [3.0, 1.0]], requires_grad=True)  # means [2, 2]
    t_gap = torch.tensor([[3.0, 1.0], [5.0, 1.0]])  # means [4, 1]
    lam = ckd.modality_weights(delta, t_gap)
    # rho = [0.5, 2]; lambda = 2/(2-1) * (1 - rho / 2.5) = [1.6, 0.4] (average 1, C2)
    assert lam.tolist() == pytest.approx([1.6, 0.4])
    assert not lam.requires_grad


def test_modality_weights_are_clamped_and_fall_back():
    t_gap = torch.ones(2, 2)
    # rho = [-1 -> 1e-8, 30 -> 10]: lambda = 2 * (1 - [1e-9, 1 - 1e-9])
    lam = ckd.modality_weights(torch.tensor([[-1.0, 30.0], [-1.0, 30.0]]), t_gap)
    assert lam.tolist() == pytest.approx([2.0, 0.0], abs=1e-6)
    assert lam.min() >= 0 and lam.max() <= 2
    # a teacher mean gap <= 1e-8 leaves rho undefined: every lambda is 1
    flat = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert ckd.modality_weights(torch.ones(2, 2), flat).tolist() == [1.0, 1.0]
    # one modality: nothing to balance
    assert ckd.modality_weights(torch.ones(3, 1), torch.ones(3, 1)).tolist() == [1.0]
    # three modalities: the weights still average 1
    lam3 = ckd.modality_weights(torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3))
    assert lam3.sum().item() == pytest.approx(3.0)


def _plugin(cfg, n_users=2, n_items=3):
    p = ckd.CKDPlugin()
    p.cfg, p.n_users, p.n_items = cfg, n_users, n_items
    p.channel_idx, p.shared_idx = [0, 1], []
    # teacher m scores: t_ui = q[u] . v[i] (1-d vectors for a readable hand computation)
    p.teachers = [
        ckd.Teacher("image", torch.tensor([[1.0], [2.0]]), torch.tensor([[1.0], [0.0], [3.0]])),
        ckd.Teacher("text", torch.tensor([[1.0], [1.0]]), torch.tensor([[2.0], [1.0], [0.0]])),
    ]
    return p


def test_step_loss_by_hand_with_weights_from_the_channel_gaps():
    cfg = TrainConfig(model="margo", plugins=("ckd",), ckd_lambda_kd=0.5, ckd_generic=0).validate()
    p = _plugin(cfg)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([1, 1])
    # teacher gaps: image [1-0, 6-0] = [1, 6]; text [2-1, 0-1] = [1, -1]
    pos_s = torch.tensor([[0.5, 2.0], [1.0, 0.0]], requires_grad=True)
    neg_s = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    # student gaps: image [0.5, 1]; text [2, 0]
    ctx = StepContext(
        None, "I", True, users, pos, neg, None, None, pos_s, neg_s, None, None
    )  # fmt: skip
    total, stats = p.loss(ctx)
    l_sd = [((1 - 0.5) + (6 - 1)) / 2, (0 + 0) / 2]  # hinge means: [2.75, 0]
    # delta = student channel gaps (stage I): means [0.75, 1]; Dt means [3.5, 0]
    # text's mean teacher gap is 0 <= 1e-8: rho undefined, every lambda is 1 (C1)
    assert stats["ckd_lambda_image"] == 1.0 and stats["ckd_lambda_text"] == 1.0
    assert total.item() == pytest.approx(0.5 * (l_sd[0] + l_sd[1]))
    total.backward()
    assert pos_s.grad is not None


def test_step_weights_in_stage_two_use_weighted_gaps_and_stage_two_is_off_by_default():
    cfg = TrainConfig(model="margo", plugins=("ckd",), ckd_generic=0).validate()
    p = _plugin(cfg)
    users, pos, neg = torch.tensor([0]), torch.tensor([0]), torch.tensor([1])
    pos_s, neg_s = torch.tensor([[2.0, 2.0]]), torch.tensor([[0.0, 1.0]])
    w = torch.tensor([[1.5, 0.5]])
    args = (users, pos, neg, None, None, pos_s, neg_s, w, w)
    assert p.loss(StepContext(None, "II", False, *args)) == (None, {})
    cfg.ckd_stage2 = True
    _, stats = p.loss(StepContext(None, "II", False, *args))
    # delta = [1.5*2 - 1.5*0, 0.5*2 - 0.5*1] = [3, 0.5]; Dt = [1, 1] -> rho [3, 0.5]
    assert stats["ckd_lambda_image"] == pytest.approx(2 * (1 - 3 / 3.5))
    assert stats["ckd_lambda_text"] == pytest.approx(2 * (1 - 0.5 / 3.5))


def test_generic_triples_enter_the_loss():
    cfg = TrainConfig(model="margo", plugins=("ckd",), ckd_generic=2).validate()
    p = _plugin(cfg)
    user_emb = torch.randn(2, 2, 4, requires_grad=True)
    item_emb = torch.randn(3, 2, 4)
    z = torch.zeros(1, 2)
    ctx = StepContext(
        None, "I", True, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]),
        user_emb, item_emb, z, z, None, None,
    )  # fmt: skip
    total, _ = p.loss(ctx)
    total.backward()
    assert user_emb.grad is not None and user_emb.grad.abs().sum() > 0


# -- teachers -----------------------------------------------------------------------------------
def test_teacher_datasets_see_only_their_modality(tiny):
    drop = ckd.teacher_dataset(tiny, "text", "drop")
    assert list(drop.features) == ["text"]
    mean = ckd.teacher_dataset(tiny, "text", "mean")
    np.testing.assert_array_equal(mean.features["text"], tiny.features["text"])
    img = mean.features["image"]
    assert np.allclose(img, img[0]) and np.allclose(img[0], tiny.features["image"].mean(0))


@pytest.mark.parametrize("mode", ["drop", "mean"])
def test_teacher_does_not_depend_on_the_other_modality(tiny, mode):
    cfg = TrainConfig(model="margo", plugins=("ckd",), ckd_teacher=mode, **FAST).validate()
    q1, v1, info = ckd.train_teacher(tiny, "text", cfg, torch.device("cpu"), fit)
    ids = ["id"] if cfg.id_channel else []  # the default's ID channel stays in the teacher
    assert info["channels"] == (["text"] if mode == "drop" else ["image", "text"]) + ids
    # shuffle the image rows: same mean, different per-item content the teacher must not see
    rows = np.random.default_rng(0).permutation(tiny.n_items)
    other = {**tiny.features, "image": tiny.features["image"][rows]}
    import dataclasses

    q2, v2, _ = ckd.train_teacher(
        dataclasses.replace(tiny, features=other), "text", cfg, torch.device("cpu"), fit
    )
    # (mean: float summation order of the permuted mean differs in the last bits)
    np.testing.assert_allclose(q1, q2, atol=1e-4)
    np.testing.assert_allclose(v1, v2, atol=1e-4)


def test_teacher_config_is_the_unweighted_backbone_without_plugins(tiny):
    cfg = TrainConfig(model="margo", plugins=("ckd", "sea"), seed=5, ckd_teacher_seed=3)
    t = ckd.teacher_config(cfg.validate(), tiny, "image")
    assert (t.model, t.plugins, t.seed) == ("fusion-sum", (), 3)
    assert (
        ckd.teacher_config(
            TrainConfig(model="vbpr", plugins=("ckd",)).validate(), tiny, "image"
        ).model
        == "vbpr"
    )


def test_teachers_are_cached_by_fingerprint(tiny, tmp_path):
    cfg = TrainConfig(model="margo", plugins=("ckd",), **FAST).validate()
    dev = torch.device("cpu")
    t1, info1 = ckd.load_or_train_teacher(tiny, "image", cfg, dev, tmp_path, fit)
    t2, info2 = ckd.load_or_train_teacher(tiny, "image", cfg, dev, tmp_path, fit)
    assert (info1["cached"], info2["cached"]) == (False, True)
    assert torch.equal(t1.q, t2.q) and torch.equal(t1.v, t2.v)
    assert len(list(tmp_path.glob("ckd-teacher-image-*.npz"))) == 1
    import dataclasses

    other = dataclasses.replace(tiny, fingerprint="0" * 64)
    assert ckd.teacher_key(other, "image", cfg) != ckd.teacher_key(tiny, "image", cfg)
    # the student's seed, kind and stage-II / plug-in options do not change the teachers
    for kw in ({"seed": 7}, {"model": "fusion-sum"}, {"alpha": 3.0, "ckd_lambda_kd": 1.0}):
        other_cfg = TrainConfig(**{"model": "margo", "plugins": ("ckd",), **FAST, **kw})
        assert ckd.teacher_key(tiny, "image", other_cfg.validate()) == ckd.teacher_key(
            tiny, "image", cfg
        )
    more_epochs = TrainConfig(model="margo", plugins=("ckd",), **{**FAST, "epochs": 9})
    assert ckd.teacher_key(tiny, "image", more_epochs.validate()) != ckd.teacher_key(
        tiny, "image", cfg
    )


# -- configuration and end to end --------------------------------------------------------------
def test_config_refusals():
    with pytest.raises(ConfigError, match="identically 1"):
        TrainConfig(plugins=("ckd",), ckd_reweight="code").validate()
    with pytest.raises(ConfigError, match="multimodal"):
        TrainConfig(model="bpr", plugins=("ckd",)).validate()
    with pytest.raises(ConfigError, match="unknown plug-in"):
        TrainConfig(plugins=("xyz",)).validate()
    with pytest.raises(ConfigError, match="ckd-tau"):
        TrainConfig(plugins=("ckd",), ckd_tau=0).validate()


def test_cli_options_reach_the_config():
    a = build_parser().parse_args(
        ["train", "--data", "d", "--out", "o", "--plugin", "ckd", "--plugin", "sea",
         "--ckd-lambda-kd", "0.1", "--ckd-teacher", "mean", "--ckd-stage2",
         "--sea-distance", "neg-l2", "--sea-scope", "full"]
    )  # fmt: skip
    cfg = config_from_args(a)
    assert cfg.plugins == ("ckd", "sea") and cfg.ckd_lambda_kd == 0.1
    assert cfg.ckd_teacher == "mean" and cfg.ckd_stage2 is True
    assert (cfg.sea_distance, cfg.sea_scope) == ("neg-l2", "full")
    plain = config_from_args(build_parser().parse_args(["train", "--data", "d", "--out", "o"]))
    assert plain.plugins == ()


@pytest.mark.parametrize("model", ["fusion-sum", "fusion-learned", "margo", "vbpr"])
def test_end_to_end_ckd_exports_an_unchanged_bundle(model, tiny, tmp_path):
    cfg = TrainConfig(model=model, plugins=("ckd",), **FAST)
    result = fit(tiny, cfg, progress=False, plugin_cache=tmp_path / "cache")
    first = [h for h in result.history if h.stage == result.stages[0].stage]
    assert all("ckd" in h.extra for h in first)
    lam = [h.extra["ckd_lambda_image"] for h in first]
    assert all(0.0 <= x <= 2.0 for x in lam)
    if cfg.weighted:  # stage II without distillation by default
        assert all("ckd" not in h.extra for h in result.history if h.stage == "II")
    path = export_model(result, tiny, cfg.validate(), tmp_path / "bundle")
    b = load_bundle(path)
    assert b.manifest.training.export_check_max_abs_error < 1e-4
    assert b.channels == result.model.channels
    assert set(b.arrays) == set(
        load_bundle(
            export_model(
                fit(tiny, TrainConfig(model=model, **FAST), progress=False),
                tiny,
                TrainConfig(model=model, **FAST).validate(),
                tmp_path / "plain",
            )
        ).arrays
    )


def test_ckd_changes_training_and_stage_two_option(tiny, tmp_path):
    plain = fit(tiny, TrainConfig(model="margo", **FAST), progress=False)
    cfg = TrainConfig(model="margo", plugins=("ckd",), ckd_stage2=True, ckd_lambda_kd=1.0, **FAST)
    with_kd = fit(tiny, cfg, progress=False, plugin_cache=tmp_path)
    assert all("ckd" in h.extra for h in with_kd.history)
    u_a, _, _ = plain.model.export_arrays()
    u_b, _, _ = with_kd.model.export_arrays()
    assert not np.allclose(u_a, u_b)


def test_cli_train_with_both_plugins_and_a_teacher_cache(tiny_bundle, tmp_path, capsys):
    from trainer.cli import main

    cache = tmp_path / "cache"
    args = ["train", "--data", str(tiny_bundle), "--model", "margo", "--epochs", "2",
            "--batch-size", "512", "--quiet", "--threads", "1", "--plugin", "ckd",
            "--plugin", "sea", "--plugin-cache", str(cache)]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert len(list(cache.glob("ckd-teacher-*.npz"))) == 2  # one per modality, reused below
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert len(list(cache.glob("ckd-teacher-*.npz"))) == 2
    b = load_bundle(tmp_path / "b")
    assert b.manifest.hyperparameters["plugins"] == ["ckd", "sea"]
    assert main(["train", "--data", str(tiny_bundle), "--out", str(tmp_path / "c"),
                 "--model", "bpr", "--plugin", "ckd"]) == 2  # fmt: skip
    assert "multimodal" in capsys.readouterr().err
