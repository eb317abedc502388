"""The export writes the reliability score of trainer/reliability into every bundle (or says
why a bundle has none), aligned to the model's channels."""

import numpy as np
import pytest

import trainer.export
from trainer.bundle import load_bundle
from trainer.config import TrainConfig
from trainer.export import export_model
from trainer.reliability import ModelArrays, ReliabilityConfig, score_items
from trainer.train import fit

FAST = {"epochs": 2, "batch_size": 512, "lr": 0.01, "patience": 5}


@pytest.fixture(scope="module")
def margo_bundle(tiny, tmp_path_factory):
    cfg = TrainConfig(model="margo", seed=3, **FAST)
    result = fit(tiny, cfg, progress=False)
    path = export_model(result, tiny, cfg, tmp_path_factory.mktemp("export") / "margo")
    return load_bundle(path), result, cfg


def test_the_bundle_carries_the_score_of_the_trained_model(tiny, margo_bundle):
    bundle, result, cfg = margo_bundle
    rel = bundle.reliability
    assert rel is not None and bundle.reliability_absent is None
    assert bundle.manifest.format_version >= 2  # the score since format 2
    # exactly what trainer/reliability computes from the dataset and the exported model
    user_emb, item_emb, weights = result.model.export_arrays()
    model = ModelArrays(list(result.model.channels), user_emb, item_emb, weights)
    expected = score_items(tiny, model, ReliabilityConfig(seed=cfg.seed))
    score, confidence = expected.for_channels(bundle.channels)
    np.testing.assert_array_equal(rel.score, score)
    np.testing.assert_array_equal(rel.confidence, confidence)
    # the default model has the ID channel beside the content ones: one score column each
    assert rel.score.shape == (tiny.n_items, 3) and bundle.channels == ["image", "text", "id"]
    assert rel.method["seconds"] > 0
    assert {k: v for k, v in rel.method.items() if k != "seconds"} == expected.method


def test_planted_noise_images_score_lower_in_the_exported_bundle(tiny, margo_bundle):
    bundle, _, _ = margo_bundle
    noisy = tiny.corruption["image"].astype(bool)  # read here, by the test, never by the trainer
    image = np.asarray(bundle.reliability.score[:, bundle.channels.index("image")])
    assert 0 < noisy.sum() < tiny.n_items
    assert image[noisy].mean() < image[~noisy].mean()


def test_an_id_channel_gets_score_1_with_confidence_0(tiny, tmp_path):
    cfg = TrainConfig(model="margo", id_channel=True, **FAST)
    bundle = load_bundle(export_model(fit(tiny, cfg, progress=False), tiny, cfg, tmp_path / "b"))
    m = bundle.channels.index("id")
    assert np.all(bundle.reliability.score[:, m] == 1) and np.all(
        bundle.reliability.confidence[:, m] == 0
    )


def test_a_model_without_content_says_why_it_has_no_score(tiny, tmp_path):
    cfg = TrainConfig(model="bpr", **FAST)
    bundle = load_bundle(export_model(fit(tiny, cfg, progress=False), tiny, cfg, tmp_path / "b"))
    assert bundle.reliability is None
    assert "bpr fuses no content modality" in bundle.reliability_absent


def test_a_dataset_too_small_to_score_keeps_the_model_and_says_why(tiny, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("dataset 'tiny': 4 items, need at least 5")

    monkeypatch.setattr(trainer.export, "score_items", refuse)
    cfg = TrainConfig(model="fusion-sum", **FAST)
    bundle = load_bundle(export_model(fit(tiny, cfg, progress=False), tiny, cfg, tmp_path / "b"))
    assert bundle.reliability is None
    assert bundle.reliability_absent == (
        "the trainer could not score this dataset: dataset 'tiny': 4 items, need at least 5"
    )
