"""Reliability-guided content repair: blend unreliable content with what the other signals
predict for it, before the model builds its item graphs and projections.

    f'_i^m = s_i^m f_i^m + (1 - s_i^m) |f_i^m| * p_i^m / |p_i^m|

s: the reliability score (trainer/reliability/score.py); p_i^m: the out-of-fold cross-modal
prediction of the item's unit content row from its collaborative embedding and its other
modalities (oof.py; never fit on the item's own row), rescaled to the row's norm. Clean content
(s near 1) is kept nearly as is; content judged swapped is replaced by its prediction, so it
no longer pulls the item (and, through the kNN graph, its neighbours) towards another item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trainer.reliability import oof
from trainer.reliability.score import ReliabilityConfig, ReliabilityScores, svd_rank

if TYPE_CHECKING:
    from trainer.data.dataset import Dataset


def repaired_features(
    data: Dataset, scores: ReliabilityScores, cfg: ReliabilityConfig
) -> dict[str, np.ndarray]:
    """``data.features`` with every modality blended towards its prediction by 1 - score."""
    collab = oof.collaborative_embedding(
        data.train_matrix().T, svd_rank(cfg, data.n_items), cfg.seed
    )
    fold = oof.folds_of(data.n_items, cfg.folds, cfg.seed)
    out = dict(data.features)
    for j, m in enumerate(scores.modalities):
        f = np.asarray(data.features[m], dtype=np.float64)
        pred, _ = oof.cross_modal_prediction(collab, data.features, m, fold)
        scale = np.linalg.norm(f, axis=1, keepdims=True)
        guess = pred / np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-12) * scale
        s = scores.score[:, j : j + 1].astype(np.float64)
        out[m] = (s * f + (1.0 - s) * guess).astype(np.float32)
    return out
