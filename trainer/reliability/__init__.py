"""Per-item modality reliability: signals, out-of-fold cross-modal consistency, and their
self-supervised combination into a score in [0, 1] with a confidence (issue 15).

    from trainer.reliability import score_items
    scores = score_items(dataset)            # or score_items(dataset, ModelArrays(...))
    scores.score, scores.confidence          # float32 [n_items, len(scores.modalities)]
"""

from trainer.reliability.model_signals import ModelArrays
from trainer.reliability.score import ReliabilityConfig, ReliabilityScores, score_items

__all__ = ["ModelArrays", "ReliabilityConfig", "ReliabilityScores", "score_items"]
