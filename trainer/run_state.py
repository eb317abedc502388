"""What a training run keeps across its stages: the best-validation state of the whole run
(the exported model), and where a stage-I state is cached for later runs to branch from."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Protocol

import torch

from trainer.config import STAGE2_ONLY, TrainConfig
from trainer.data.dataset import Dataset
from trainer.models import resolved_feature_norm
from trainer.models.base import Recommender

log = logging.getLogger(__name__)


class StageOutcome(Protocol):
    """The part of a stage's result the best state reads (trainer.train.StageResult)."""

    stage: str
    best_valid: dict[str, float]


class BestState:
    """The best-validation state of the whole run (issue 18): a stage II that never beats
    stage I's best hands back stage I's state, so the exported model is never the worse one.

    Ties keep the later stage. Stage I's state has no fusion logits W; restoring it into a
    weighted model sets W = 0, i.e. uniform weights: exactly stage I's sum with the M-scaled
    fusion, and the same ranking (scores / M) without it.
    """

    def __init__(self) -> None:
        self.value = float("-inf")
        self.stage = ""
        self.valid: dict[str, float] = {}
        self.state: dict[str, torch.Tensor] | None = None
        self.latest = ""

    def offer(self, model: Recommender, result: StageOutcome, metric: str) -> None:
        """Call after each stage, with ``model`` in that stage's best state."""
        self.latest = result.stage
        value = result.best_valid.get(metric, float("-inf"))
        if value >= self.value or self.state is None:
            self.value, self.stage, self.valid = value, result.stage, result.best_valid
            self.state = copy.deepcopy(model.state_dict())

    def restore(self, model: Recommender) -> None:
        """Load the best state into ``model`` unless it already holds it (the last stage's)."""
        if self.state is None or self.stage == self.latest:
            return
        keys = model.load_state_dict(self.state, strict=False)
        w = model.weight_logits
        names = {n for n, p in model.named_parameters() if p is w}
        if keys.unexpected_keys or set(keys.missing_keys) - names:
            raise RuntimeError(f"best state does not fit the model: {keys}")
        if w is not None and names & set(keys.missing_keys):
            with torch.no_grad():
                w.zero_()
        log.info("stage %s had the best validation state of the run: exporting it", self.stage)


def stage1_cache_path(cache: Path | None, cfg: TrainConfig, data: Dataset) -> Path | None:
    """Where ``fit(stage1_cache=cache)`` keeps (or finds) the best stage-I state of ``cfg``."""
    if cache is None:
        return None
    keep = {k: v for k, v in cfg.to_dict().items() if k not in STAGE2_ONLY}
    # feature_norm as it runs: "auto" shares stage I with what it resolves to on this data
    keep["feature_norm"] = resolved_feature_norm(cfg, data)
    # options of plug-ins that are off do not change stage I (keeps plain runs' keys as before)
    for name in ("ckd", "sea"):
        if name not in cfg.plugins:
            keep = {k: v for k, v in keep.items() if not k.startswith(f"{name}_")}
    if not cfg.plugins:
        keep.pop("plugins", None)
    if not cfg.reliability_repair:  # the threshold of repair that is off (keys as before it)
        keep.pop("repair_threshold", None)
    key = json.dumps(
        {"data": data.fingerprint, "modalities": list(data.features), **keep}, sort_keys=True
    )
    return Path(cache) / f"stage1-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"
