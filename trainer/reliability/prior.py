"""Reliability-guided fusion: the reliability score as a prior on the weight logits W.

    W_0[i, m] = reliability_prior * log(max(score[i, m], SCORE_FLOOR)) + N(0, std^2)

Stage II of fusion-learned/margo starts from W_0 instead of W ~ N(0, std^2) (A5), so an item
whose content of modality m looks swapped starts with that channel's weight scaled down by
score^reliability_prior (relative to the others), and training moves W from there. Channels
without content (``id``) get 0. The score is computed from the training data only
(``score_items`` without a model: no trained model exists yet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trainer.reliability.score import ReliabilityConfig, score_items

if TYPE_CHECKING:
    import torch

    from trainer.config import TrainConfig
    from trainer.data.dataset import Dataset

SCORE_FLOOR = 1e-2  # log(0.01) = -4.6: a channel judged swapped keeps a small weight


def logit_prior(score: np.ndarray, strength: float) -> np.ndarray:
    """strength * log(max(score, SCORE_FLOOR)), float32, same shape as ``score``."""
    return (strength * np.log(np.clip(score, SCORE_FLOOR, 1.0))).astype(np.float32)


def weight_logit_prior(data: Dataset, channels: list[str], cfg: TrainConfig) -> torch.Tensor:
    """The [n_items, len(channels)] prior of ``cfg.reliability_prior`` for ``data``."""
    import torch

    rel = score_items(data, cfg=ReliabilityConfig(seed=cfg.seed))
    score, _ = rel.for_channels(channels)
    return torch.from_numpy(logit_prior(score, cfg.reliability_prior))
