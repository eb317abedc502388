"""The plug-in interface: extra loss terms per training step, with the model's per-channel view.

A plug-in is set up once per fit (it may train helpers such as CKD's teachers and may install
modules into the model, e.g. SEA's feature transform), then adds a loss to every batch. It sees
the step through ``StepContext``: the full forward pass (per-channel user and item embeddings),
the batch's per-channel scores and fusion weights. Nothing a plug-in adds changes how the model
scores, so the exported bundle keeps its format and the one-inner-product identity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.data.dataset import Dataset
    from trainer.models.base import Recommender


@dataclass
class StepContext:
    """One training step as a plug-in sees it. Shapes: B batch, M channels, d size."""

    model: Recommender
    stage: str  # "I" or "II"
    first_stage: bool  # the first stage of the plan (stage I, or II under --no-two-stage)
    users: torch.Tensor  # [B]
    pos: torch.Tensor  # [B]
    neg: torch.Tensor  # [B]
    # this step's forward pass (with gradient): every user's rows only when a plug-in sets
    # ``needs_all_users`` (the step computes the batch's users alone otherwise)
    user_emb: torch.Tensor | None  # [n_users, M, d]
    item_emb: torch.Tensor  # [n_items, M, d]
    pos_scores: torch.Tensor  # [B, M] channel scores y_ui^m
    neg_scores: torch.Tensor  # [B, M]
    w_pos: torch.Tensor | None  # [B, M] fusion weights of the positives (None: unweighted)
    w_neg: torch.Tensor | None


class Plugin(ABC):
    """Base class; subclasses set ``name`` and implement ``loss``."""

    name: str = ""
    needs_all_users: bool = False  # True: the step computes every user's embeddings for it

    def setup(
        self,
        model: Recommender,
        data: Dataset,
        cfg: TrainConfig,
        device: torch.device,
        cache_dir: Path | None,
    ) -> None:
        """Called once after the model is built and before any stage (and before its optimiser)."""
        del model, data, cfg, device, cache_dir

    def parameters(self) -> list[nn.Parameter]:
        """Parameters outside the model that the model's optimiser also steps."""
        return []

    @abstractmethod
    def loss(self, ctx: StepContext) -> tuple[torch.Tensor | None, dict[str, float]]:
        """The extra loss of this step (None: nothing this step) and stats to log."""

    def before_step(self) -> None:
        """After the step's backward pass, before the model's optimiser step."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Plug-in state kept with a cached stage-I state (the model's own is saved apart)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
