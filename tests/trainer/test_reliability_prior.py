"""Reliability-guided fusion (--reliability-prior): the score as a prior on MARGO's W."""

import numpy as np
import torch

from trainer.config import TrainConfig
from trainer.reliability.prior import SCORE_FLOOR, logit_prior
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
        model="margo", epochs=1, batch_size=512, threads=1, two_stage=False, weight_lr=1e-9
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
