"""The fusion strategies: which stages run, what stage II sets up, how much L_cal is added."""

import numpy as np
import pytest

from trainer.config import BACKBONE_MODELS, MODELS, WEIGHTED_MODELS, TrainConfig
from trainer.models import build_model
from trainer.models.fusion import FUSIONS, LearnedFusion, MargoFusion, SumFusion, fusion_for


def test_every_model_has_a_fusion_matching_the_config():
    assert set(FUSIONS) == set(BACKBONE_MODELS)
    for model in MODELS:
        assert fusion_for(model).learns_weights == (model in WEIGHTED_MODELS)
    assert type(fusion_for("bpr")) is SumFusion and type(fusion_for("margo")) is MargoFusion


@pytest.mark.parametrize(
    ("fusion", "two_stage", "stages", "alpha_ii"),
    [
        (SumFusion(), True, ["I"], 0.0),
        (LearnedFusion(), True, ["I", "II"], 0.0),
        (LearnedFusion(), False, ["II"], 0.0),
        (MargoFusion(), True, ["I", "II"], 0.3),
        (MargoFusion(), False, ["II"], 0.3),
    ],
)
def test_stage_plan_and_calibration_weight(fusion, two_stage, stages, alpha_ii):
    cfg = TrainConfig(model="margo", alpha=0.3, two_stage=two_stage)
    assert fusion.stages(cfg) == stages
    assert fusion.calibration_weight(cfg, "I") == 0.0  # stage I never calibrates (Eq. 9)
    assert fusion.calibration_weight(cfg, "II") == alpha_ii


def test_stage_two_of_a_learned_fusion_creates_the_weights(tiny):
    cfg = TrainConfig(model="fusion-learned", weight_init_std=0.01)
    model = build_model(cfg, tiny)
    SumFusion().start_stage(model, cfg, "II")
    LearnedFusion().start_stage(model, cfg, "I")
    assert model.weight_logits is None
    LearnedFusion().start_stage(model, cfg, "II")
    w = model.fusion_weights()
    assert w is not None and model.weight_scale == len(model.channels)  # A5 variant: scale M
    np.testing.assert_allclose(w.detach().sum(1).numpy(), len(model.channels), rtol=1e-5)
    assert float(model.weight_logits.detach().std()) < 0.05  # W ~ N(0, 0.01^2)
