"""Reliability-guided training: the score as a prior on MARGO's W (--reliability-prior) and
as the blend of content repair (--reliability-repair, below --repair-threshold)."""

import numpy as np
import torch

from trainer.config import TrainConfig
from trainer.reliability import ReliabilityConfig, ReliabilityScores, oof
from trainer.reliability.prior import SCORE_FLOOR, guided_data, logit_prior
from trainer.reliability.repair import repair_rows, repaired_features
from trainer.reliability.score import svd_rank
from trainer.train import fit, stage1_cache_path


def test_logit_prior_by_hand():
    score = np.array([[1.0, 0.5], [0.0, 0.1]], np.float32)
    want = 2.0 * np.log(np.array([[1.0, 0.5], [SCORE_FLOOR, 0.1]]))
    np.testing.assert_allclose(logit_prior(score, 2.0), want, rtol=1e-6)


def test_prior_is_a_stage_two_option(tiny, tmp_path):
    base = TrainConfig(model="margo", epochs=1)
    guided = base.replace(reliability_prior=1.0)
    # the stage-I cache is shared: the prior changes stage II only
    assert stage1_cache_path(tmp_path, base, tiny) == stage1_cache_path(tmp_path, guided, tiny)


def test_guided_margo_starts_from_the_prior_and_faithful_margo_is_unchanged(tiny):
    cfg = TrainConfig(
        model="margo", epochs=1, batch_size=512, threads=1, two_stage=False, weight_lr=1e-9,
        id_channel=False,  # two content channels: uniform weights are 0.5
    )
    faithful = fit(tiny, cfg, progress=False).model
    assert faithful.weight_prior is None
    guided = fit(tiny, cfg.replace(reliability_prior=5.0), progress=False).model
    prior = guided.weight_prior
    assert prior is not None and prior.shape == (tiny.n_items, 2)
    # with W barely trained (weight_lr ~ 0) the weights are the prior's softmax (+ the A5 noise)
    np.testing.assert_allclose(
        guided.item_weights().detach().numpy(), torch.softmax(prior, -1).numpy(), atol=0.02
    )
    # the fixture's noise image rows start with a lower image weight than the clean ones
    noisy = tiny.corruption["image"]
    w_img = guided.item_weights().detach().numpy()[:, guided.channels.index("image")]
    assert w_img[noisy].mean() < w_img[~noisy].mean() - 0.15
    # the faithful model's weights start uniform (A5: W ~ N(0, 0.01^2))
    w0 = faithful.item_weights().detach().numpy()
    assert np.abs(w0 - 0.5).max() < 0.02


def test_repair_rows_by_hand():
    content = np.array([[2.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    guess = np.array([[0.0, 2.0], [4.0, 0.0], [3.0, 3.0]])
    score = np.array([0.25, 0.5, 0.9])
    # t = 0.5: only the row below it moves, by 1 - s: 0.25 [2, 0] + 0.75 [0, 2] = [0.5, 1.5]
    want = np.array([[0.5, 1.5], [0.0, 4.0], [1.0, 1.0]])
    np.testing.assert_allclose(repair_rows(content, guess, score, 0.5), want)
    # t = 1: every row below 1 blends: 0.5 [0, 4] + 0.5 [4, 0] = [2, 2]; 0.9 [1, 1] + 0.1 [3, 3]
    want_all = np.array([[0.5, 1.5], [2.0, 2.0], [1.2, 1.2]])
    np.testing.assert_allclose(repair_rows(content, guess, score, 1.0), want_all)
    np.testing.assert_array_equal(repair_rows(content, guess, score, 0.0), content)


def test_repair_blends_only_items_below_the_threshold(tiny):
    cfg = ReliabilityConfig()
    n = tiny.n_items
    score = np.ones((n, 2), np.float32)
    score[:10, 0] = 0.0  # image rows 0-9 judged swapped: replaced by the prediction
    score[10:20, 0] = 0.3  # blended: 0.3 f + 0.7 guess
    score[20:30, 0] = 0.7  # above the threshold: kept exactly
    scores = ReliabilityScores(list(tiny.features), score, np.ones_like(score))
    out = repaired_features(tiny, scores, cfg, threshold=0.5)
    f = tiny.features["image"].astype(np.float64)
    collab = oof.collaborative_embedding(tiny.train_matrix().T, svd_rank(cfg, n), cfg.seed)
    pred, _ = oof.cross_modal_prediction(collab, tiny.features, "image", oof.folds_of(n, 5, 0))
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    guess = pred / np.linalg.norm(pred, axis=1, keepdims=True) * norm
    np.testing.assert_allclose(out["image"][:10], guess[:10], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        out["image"][10:20], (0.3 * f + 0.7 * guess)[10:20], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(out["image"][20:], tiny.features["image"][20:])
    assert out["text"] is tiny.features["text"]  # no text row below the threshold
    # threshold 1: the rule before the threshold, every row blended by 1 - score
    every = repaired_features(tiny, scores, cfg, threshold=1.0)
    np.testing.assert_allclose(
        every["image"][20:30], (0.7 * f + 0.3 * guess)[20:30], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(every["image"][30:], tiny.features["image"][30:])


def test_guided_data_is_the_data_itself_when_off_and_repaired_when_on(tiny):
    same, rel = guided_data(tiny, TrainConfig(model="margo"))
    assert same is tiny and rel is None
    repaired, rel = guided_data(tiny, TrainConfig(model="fusion-sum", reliability_repair=True))
    assert rel is not None and repaired.train is tiny.train
    changed = np.abs(repaired.features["image"] - tiny.features["image"]).max(1) > 1e-6
    # the fixture's noise image rows are the ones moved most
    noisy = tiny.corruption["image"]
    moved = np.linalg.norm(repaired.features["image"] - tiny.features["image"], axis=1)
    assert changed.any() and moved[noisy].mean() > 2 * moved[~noisy].mean()
    # content scored at or above the threshold is the stored content, exactly
    above = rel.score[:, rel.modalities.index("image")] >= 0.5
    assert above.any() and (~above).any()
    assert not changed[above].any() and changed[~above].all()


def test_fit_builds_the_model_on_repaired_content(tiny):
    cfg = TrainConfig(model="fusion-sum", epochs=1, batch_size=512, threads=1)
    before = tiny.features["image"].copy()
    model = fit(tiny, cfg.replace(reliability_repair=True), progress=False).model
    repaired, _ = guided_data(tiny, cfg.replace(reliability_repair=True))
    np.testing.assert_array_equal(model.features["image"].numpy(), repaired.features["image"])
    np.testing.assert_array_equal(tiny.features["image"], before)  # the caller's data untouched
