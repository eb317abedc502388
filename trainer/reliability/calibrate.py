"""Self-supervised calibration: learn how to combine the signals without any ground truth.

A copy of the training content gets a KNOWN extra set of swaps (a random ``fraction`` of items
per modality take another random item's row), the signals are recomputed on that copy, and a
logistic regression per modality learns to tell the injected swaps from the other items. Applied
to the real items' signals, its probability is the suspicion; the score is 1 - suspicion.

The copy still holds whatever real corruption the data has, labelled "not injected": that label
noise only shrinks the fitted coefficients, it does not flip them. Nothing here reads a
dataset's corruption mask.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import rankdata


def inject_swaps(
    features: dict[str, np.ndarray], fraction: float, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Copy ``features``; in each modality a random ``fraction`` of rows take another item's row.

    Returns (features, injected bool [I] per modality, donor item per injected row or -1 [I]).
    """
    out, injected, donors = {}, {}, {}
    for m, f in features.items():
        n = f.shape[0]
        bad = rng.choice(n, size=max(1, round(fraction * n)), replace=False)
        src = (bad + rng.integers(1, n, size=bad.size)) % n  # another item, never itself
        g = f.copy()
        g[bad] = f[src]
        mask = np.zeros(n, dtype=bool)
        mask[bad] = True
        donor = np.full(n, -1, dtype=np.int64)
        donor[bad] = src
        out[m], injected[m], donors[m] = g, mask, donor
    return out, injected, donors


class LogisticCombiner:
    """L2-regularised logistic regression on standardised features; NaN -> the mean (0).

    ``fit(x [n, k], y [n])``; ``predict(x) -> P(injected) [n]``. ``coef`` is in standardised
    units so its magnitudes compare across signals.
    """

    def __init__(self, l2: float = 1e-2) -> None:
        self.l2 = l2
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.coef: np.ndarray | None = None
        self.bias = 0.0

    def _design(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        return np.where(np.isnan(z), 0.0, z)

    def fit(
        self, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None
    ) -> LogisticCombiner:
        """``weight``: optional non-negative weight per row of the mean log-loss (default 1)."""
        wt = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
        if wt.shape != (len(y),) or (wt < 0).any() or wt.sum() <= 0:
            raise ValueError("weight must be one non-negative value per row, not all 0")
        wt = wt / wt.mean()
        self.mean = np.nanmean(x, 0)
        self.mean = np.where(np.isnan(self.mean), 0.0, self.mean)
        std = np.nanstd(x, 0)
        self.std = np.where(np.isnan(std) | (std < 1e-12), 1.0, std)
        z = self._design(x)
        t = y.astype(np.float64)
        n, k = z.shape

        def loss(p: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = p[:k], p[k]
            s = z @ w + b
            # mean log-loss, written with logaddexp for stability
            val = np.mean(wt * (np.logaddexp(0.0, s) - t * s)) + 0.5 * self.l2 * w @ w
            r = wt * (expit(s) - t) / n
            return float(val), np.concatenate([z.T @ r + self.l2 * w, [r.sum()]])

        res = minimize(loss, np.zeros(k + 1), jac=True, method="L-BFGS-B")
        self.coef, self.bias = res.x[:k], float(res.x[k])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return expit(self._design(x) @ self.coef + self.bias)


def clean_weights(injected: np.ndarray, suspicion: np.ndarray, rounds: int) -> np.ndarray:
    """Weights of the copies' rows for a second combiner fit: 1 for an injected swap, and for
    a row labelled clean, the first fit's probability that the item's REAL content is clean
    (1 - its suspicion on the real items). The copies keep the data's own corruption, labelled
    clean; this down-weights those rows instead of teaching the combiner that they are fine.
    ``injected``: labels of ``rounds`` stacked copies; ``suspicion``: [n_items] on real data."""
    real_clean = np.tile(1.0 - np.asarray(suspicion, dtype=np.float64), rounds)
    if real_clean.shape != injected.shape:
        raise ValueError(f"{injected.shape[0]} rows for {rounds} copies of {len(suspicion)} items")
    return np.where(injected, 1.0, real_clean)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for the positive ``labels`` (ties count half); NaN rows dropped."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    ok = ~np.isnan(scores)
    labels, scores = labels[ok], scores[ok]
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def evidence_confidence(n_train: np.ndarray, half: float) -> np.ndarray:
    """Confidence from the item's training interactions: n / (n + half), in [0, 1).

    ``half`` interactions give confidence 0.5; an item with none gets 0 (its score then rests
    on its other modalities alone).
    """
    n = np.asarray(n_train, dtype=np.float64)
    return n / (n + half)
