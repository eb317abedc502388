"""How a model's per-channel scores are fused: the three fusions as small strategy objects.

    SumFusion      y_ui = sum_m y_ui^m                          one stage (Eq. 9)
    LearnedFusion  y_ui = sum_m w_i^m y_ui^m, W trained by L_rec  stage II adds W (Eq. 3)
    MargoFusion    LearnedFusion + alpha * L_cal in stage II     (Eq. 10)

The training loop asks the model's fusion which stages to run, what to set up at the start
of a stage and how much calibration loss to add; nothing else in the loop depends on the
model's name. Every model has a fusion: BPR-MF, LightGCN and VBPR sum their channels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.models.base import Recommender


class SumFusion:
    """Unweighted channel sum: stage I only, no per-item weights (the "w/o weight" model)."""

    name: ClassVar[str] = "sum"
    learns_weights: ClassVar[bool] = False

    def stages(self, cfg: TrainConfig) -> list[str]:
        return ["I"]

    def start_stage(self, model: Recommender, cfg: TrainConfig, stage: str) -> None:
        """Set the model up for ``stage`` (nothing to do for a plain sum)."""

    def calibration_weight(self, cfg: TrainConfig, stage: str) -> float:
        """The alpha of L_cal in ``stage`` (0: no calibration loss)."""
        return 0.0


class LearnedFusion(SumFusion):
    """Per-item weights w_i = scale * softmax(W[i]) learned by L_rec alone (stage II)."""

    name: ClassVar[str] = "learned"
    learns_weights: ClassVar[bool] = True

    def stages(self, cfg: TrainConfig) -> list[str]:
        return ["I", "II"] if cfg.two_stage else ["II"]

    def start_stage(self, model: Recommender, cfg: TrainConfig, stage: str) -> None:
        if stage != "II":
            return
        # A5: W ~ N(0, std^2) from its own seeded stream; scale M keeps the stage-I score scale
        scale = float(len(model.channels)) if cfg.scale_weights else 1.0
        model.enable_weights(
            cfg.weight_init_std, torch.Generator().manual_seed(cfg.seed + 1), scale
        )


class MargoFusion(LearnedFusion):
    """MARGO: learned per-item weights calibrated towards the reliability target (L_cal)."""

    name: ClassVar[str] = "margo"

    def calibration_weight(self, cfg: TrainConfig, stage: str) -> float:
        return cfg.alpha if stage == "II" else 0.0


# model name -> its fusion; every other model (bpr, lightgcn, vbpr) sums its channels
FUSIONS: dict[str, SumFusion] = {
    "fusion-sum": SumFusion(),
    "fusion-learned": LearnedFusion(),
    "margo": MargoFusion(),
}


def fusion_for(model: str) -> SumFusion:
    """The fusion strategy of model ``model``."""
    return FUSIONS.get(model) or FUSIONS["fusion-sum"]
