"""Issue 18: the exported model is the best validation state of the whole run."""

import copy

import pytest
import torch

from trainer import train
from trainer.config import TrainConfig
from trainer.train import fit

FAST = {"epochs": 3, "batch_size": 512, "lr": 0.01, "patience": 3}


def _scripted_validation(monkeypatch, values: dict[str, list[float]]) -> list[str]:
    """Validation Recall@20 follows ``values`` per stage; test is computed for real."""
    real = train.evaluate_model
    stage_of_call: list[str] = []

    def fake(model, data, split, cfg):
        if split != "valid":
            return real(model, data, split, cfg)
        stage = "II" if model.weight_logits is not None else "I"
        stage_of_call.append(stage)
        v = values[stage][stage_of_call.count(stage) - 1]
        return {"recall@20": v, "ndcg@20": v}

    monkeypatch.setattr(train, "evaluate_model", fake)
    return stage_of_call


def test_stage2_that_only_gets_worse_exports_stage1_best(tiny, monkeypatch):
    _scripted_validation(monkeypatch, {"I": [0.1, 0.3, 0.2], "II": [0.25, 0.2, 0.1]})
    kept = {}

    def snapshot(report):
        if report.stage == "I" and report.epoch == 2:  # stage I's best epoch
            kept.update(copy.deepcopy(report.model.state_dict()))

    r = fit(tiny, TrainConfig(model="margo", **FAST), callback=snapshot, progress=False)
    assert [s.stage for s in r.stages] == ["I", "II"]
    assert r.best_stage == "I" and r.valid["recall@20"] == 0.3
    state = r.model.state_dict()
    assert set(state) - set(kept) == {"weight_logits"}
    for name, value in kept.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0)
    # W = 0: uniform weights, with the default M-scaled fusion exactly stage I's sum
    assert torch.all(r.model.weight_logits == 0)
    assert torch.all(r.model.fusion_weights() == 1.0)


def test_stage2_that_improves_is_kept(tiny, monkeypatch):
    _scripted_validation(monkeypatch, {"I": [0.1, 0.3, 0.2], "II": [0.25, 0.35, 0.1]})
    kept = {}

    def snapshot(report):
        if report.stage == "II" and report.epoch == 2:
            kept.update(copy.deepcopy(report.model.state_dict()))

    r = fit(tiny, TrainConfig(model="margo", **FAST), callback=snapshot, progress=False)
    assert r.best_stage == "II" and r.valid["recall@20"] == 0.35
    for name, value in r.model.state_dict().items():
        torch.testing.assert_close(value, kept[name], rtol=0, atol=0)


@pytest.mark.parametrize("model", ["bpr", "fusion-sum"])
def test_single_stage_models_report_their_stage(tiny, model):
    r = fit(tiny, TrainConfig(model=model, epochs=2, batch_size=512), progress=False)
    assert r.best_stage == "I" and r.valid == r.stages[0].best_valid
