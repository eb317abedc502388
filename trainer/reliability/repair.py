"""Reliability-guided content repair: replace content judged swapped with what the other signals
predict for it, before the model builds its item graphs and projections.

    f'_i^m = f_i^m                                           if s_i^m >= t
    f'_i^m = s_i^m f_i^m + (1 - s_i^m) |f_i^m| * p_i^m / |p_i^m|   if s_i^m <  t

s: the reliability score (trainer/reliability/score.py), the self-supervised combiner's
probability that the content is clean; t: ``repair_threshold`` (0.5 by default: the content is
repaired only where the score judges a swap more likely than not). p_i^m: the out-of-fold
cross-modal prediction of the item's content row from its collaborative embedding and its other
modalities (oof.py; never fit on the item's own row), rescaled to the row's norm.

Why the threshold: blending EVERY item by 1 - s (t = 1) also moves clean content, by 12% of its
row on average on clean ml-latest-small, where no item is swapped, and cost Recall@20 on clean
data (bench/results/reliability.md). Content above the threshold is kept exactly; content judged
swapped is moved towards its prediction, so it no longer pulls the item (and, through the kNN
graph, its neighbours) towards another item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trainer.reliability import oof
from trainer.reliability.score import ReliabilityConfig, ReliabilityScores, svd_rank

if TYPE_CHECKING:
    from trainer.data.dataset import Dataset


def repair_rows(
    content: np.ndarray, guess: np.ndarray, score: np.ndarray, threshold: float
) -> np.ndarray:
    """The equation above for one modality: ``content`` and ``guess`` [n, d], ``score`` [n]."""
    s = np.asarray(score, dtype=np.float64)[:, None]
    f = np.asarray(content, dtype=np.float64)
    blended = s * f + (1.0 - s) * np.asarray(guess, dtype=np.float64)
    return np.where(s < threshold, blended, f)


def repaired_features(
    data: Dataset, scores: ReliabilityScores, cfg: ReliabilityConfig, threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """``data.features`` with each modality's rows scored below ``threshold`` blended towards
    their prediction by 1 - score; every other row unchanged (the same array values)."""
    collab = oof.collaborative_embedding(
        data.train_matrix().T, svd_rank(cfg, data.n_items), cfg.seed
    )
    fold = oof.folds_of(data.n_items, cfg.folds, cfg.seed)
    out = dict(data.features)
    for j, m in enumerate(scores.modalities):
        s = scores.score[:, j]
        if not (s < threshold).any():
            continue  # nothing judged swapped: the modality's array itself
        f = np.asarray(data.features[m], dtype=np.float64)
        pred, _ = oof.cross_modal_prediction(collab, data.features, m, fold)
        scale = np.linalg.norm(f, axis=1, keepdims=True)
        guess = pred / np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-12) * scale
        rows = repair_rows(f, guess, s, threshold).astype(np.float32)
        keep = s >= threshold
        rows[keep] = data.features[m][keep]  # exactly the stored values, not a float64 round trip
        out[m] = rows
    return out
