"""The combined reliability score (trainer/reliability/score.py): end to end on a tiny dataset."""

import dataclasses

import numpy as np
import pytest

from trainer.data import load_dataset
from trainer.reliability import ModelArrays, ReliabilityConfig, score_items
from trainer.reliability.calibrate import roc_auc


def _swapped(data, modality: str, fraction: float = 0.2, seed: int = 3):
    """A copy of ``data`` whose ``modality`` rows of a random ``fraction`` of items are other
    items' rows, and the mask of those items (kept apart: the copy carries no mask)."""
    rng = np.random.default_rng(seed)
    n = data.n_items
    bad = rng.choice(n, size=round(fraction * n), replace=False)
    feat = data.features[modality].copy()
    feat[bad] = data.features[modality][(bad + rng.integers(1, n, size=bad.size)) % n]
    mask = np.zeros(n, dtype=bool)
    mask[bad] = True
    copy = dataclasses.replace(data, features={**data.features, modality: feat}, corruption=None)
    return copy, mask


@pytest.fixture(scope="module")
def swapped(tiny):
    return _swapped(tiny, "text")


@pytest.fixture(scope="module")
def scored(swapped):
    return score_items(swapped[0])


def test_planted_swaps_score_lower_than_clean_items(swapped, scored):
    data, mask = swapped
    j = scored.modalities.index("text")
    s = scored.score[:, j]
    assert s[mask].mean() < s[~mask].mean() - 0.2
    assert roc_auc(mask, -s) > 0.85
    # the fixture's noise image rows are found too (a different corruption than injected)
    noisy = load_dataset(data.path).corruption["image"]
    assert roc_auc(noisy, -scored.score[:, scored.modalities.index("image")]) > 0.85


def test_scores_are_bounded_and_never_nan(scored, swapped):
    data, _ = swapped
    for a in (scored.score, scored.confidence):
        assert a.dtype == np.float32 and a.shape == (data.n_items, 2)
        assert np.isfinite(a).all() and (a >= 0).all() and (a <= 1).all()
    signals = [
        "agreement",
        "cross_modal",
        "matching",
        "assignment",
        "matching_robust",
        "assignment_robust",
        "collab_from_content",
    ]
    assert scored.method["signals"] == signals
    assert set(scored.method["coefficients"]) == {"image", "text"}


def test_items_with_few_interactions_get_low_confidence(swapped):
    data, _ = swapped
    # drop every training pair of items 0-4 but one, and all of item 5's
    keep = ~np.isin(data.train[:, 1], [0, 1, 2, 3, 4, 5])
    firsts = [np.flatnonzero(data.train[:, 1] == i)[0] for i in range(5)]
    keep[firsts] = True
    sparse = dataclasses.replace(data, train=data.train[keep])
    rel = score_items(sparse, cfg=ReliabilityConfig(inject_rounds=1))
    assert np.isfinite(rel.score).all() and np.isfinite(rel.confidence).all()
    assert (rel.confidence[5] == 0).all()  # no training interaction: no evidence
    assert (rel.confidence[:5] < 0.2).all()
    popular = np.bincount(sparse.train[:, 1], minlength=sparse.n_items) >= 20
    assert (rel.confidence[popular] > 0.75).all()


def test_calibration_never_reads_a_corruption_mask(swapped, scored):
    data, mask = swapped
    rng = np.random.default_rng(0)
    for corruption in (
        {"text": mask, "image": np.zeros_like(mask)},
        {"text": rng.permutation(mask), "image": rng.permutation(mask)},
    ):
        again = score_items(dataclasses.replace(data, corruption=corruption))
        np.testing.assert_array_equal(again.score, scored.score)
        np.testing.assert_array_equal(again.confidence, scored.confidence)


def test_for_channels_aligns_to_a_models_channels(scored):
    score, conf = scored.for_channels(["text", "id", "image"])
    np.testing.assert_array_equal(score[:, 0], scored.score[:, 1])
    np.testing.assert_array_equal(score[:, 2], scored.score[:, 0])
    assert (score[:, 1] == 1).all() and (conf[:, 1] == 0).all()


def test_model_signals_join_when_a_model_is_given(swapped):
    data, _ = swapped
    rng = np.random.default_rng(1)
    channels = ["image", "text", "id"]
    model = ModelArrays(
        channels=channels,
        user_emb=rng.normal(size=(data.n_users, 3, 4)).astype(np.float32),
        item_emb=rng.normal(size=(data.n_items, 3, 4)).astype(np.float32),
        weights=np.full((data.n_items, 3), 1 / 3, np.float32),
    )
    rel = score_items(data, model, ReliabilityConfig(inject_rounds=1))
    assert "bpr_reliability" in rel.method["signals"]
    assert rel.method["reported_only"] == ["learned_weight"]
    np.testing.assert_array_equal(rel.signals["learned_weight"], model.weights[:, :2])
    assert np.isfinite(rel.score).all()
    with pytest.raises(ValueError, match="weights shape"):
        ModelArrays(channels, model.user_emb, model.item_emb, model.weights[:, :2])
