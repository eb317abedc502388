"""Reliability-guided training (issue 15): the score of trainer/reliability used by ``fit``.

Two options of TrainConfig, both off by default (faithful MARGO):

- ``reliability_repair``: before the model is built, the content of each item scored below
  ``repair_threshold`` is blended towards its out-of-fold cross-modal prediction by 1 - score
  (repair.py; content above it is kept exactly), so item graphs and projections see repaired
  content (every model that uses content; stage I included).
- ``reliability_prior`` (strength S): stage II of fusion-learned/margo starts its weight logits
  at W_0[i, m] = S * log(max(score[i, m], SCORE_FLOOR)) + N(0, std^2) instead of N(0, std^2),
  so a channel judged swapped starts with its weight scaled down by score^S (relative to the
  others); training moves W from there. Channels without content (``id``) get 0.

The score is computed from the training data only, without a model (none is trained yet).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from trainer.reliability.repair import repaired_features
from trainer.reliability.score import ReliabilityConfig, ReliabilityScores, score_items

if TYPE_CHECKING:
    import torch

    from trainer.config import TrainConfig
    from trainer.data.dataset import Dataset

SCORE_FLOOR = 1e-2  # log(0.01) = -4.6: a channel judged swapped keeps a small weight


def logit_prior(score: np.ndarray, strength: float) -> np.ndarray:
    """strength * log(max(score, SCORE_FLOOR)), float32, same shape as ``score``."""
    return (strength * np.log(np.clip(score, SCORE_FLOOR, 1.0))).astype(np.float32)


def guided_data(data: Dataset, cfg: TrainConfig) -> tuple[Dataset, ReliabilityScores | None]:
    """(the data to train on, the score) for ``cfg``'s reliability options; ``data`` and None
    when both are off. The score is of the original content."""
    if not (cfg.reliability_repair or cfg.reliability_prior > 0) or not data.features:
        return data, None
    rcfg = ReliabilityConfig(seed=cfg.seed)
    scores = score_items(data, cfg=rcfg)
    if cfg.reliability_repair:
        feats = repaired_features(data, scores, rcfg, cfg.repair_threshold)
        data = dataclasses.replace(data, features=feats)
    return data, scores


def weight_logit_prior(
    scores: ReliabilityScores, channels: list[str], strength: float
) -> torch.Tensor:
    """The [n_items, len(channels)] logit prior of strength ``strength``."""
    import torch

    score, _ = scores.for_channels(channels)
    return torch.from_numpy(logit_prior(score, strength))
