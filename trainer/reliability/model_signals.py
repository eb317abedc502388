"""Signals from a trained model: MARGO's BPR-derived reliability and its learned weights.

``bpr_reliability`` accumulates the Eq. 6 targets per item: for every training pair (u, i) and
``negatives`` uniformly sampled items k, the channel gaps d_uik (Eq. 5) give z_uik (Eq. 6) and
the fused gap gives gamma_uik (Eq. 7); item i's value for channel m is
    sum_{u,k} gamma_uik valid_uik z_uik^m / sum_{u,k} gamma_uik valid_uik
(NaN where that sum is 0). Eqs. 5-7 are trainer/losses.py's, not re-implemented here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelArrays:
    """A trained model's arrays: ``model.channels`` and ``model.export_arrays()``.

    user_emb [U, M, d], item_emb [I, M, d], weights [I, M] (the fusion weights; ones for an
    unweighted model), channels: the M channel names (modalities, maybe ``id``).
    """

    channels: list[str]
    user_emb: np.ndarray
    item_emb: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        m = len(self.channels)
        if self.user_emb.ndim != 3 or self.user_emb.shape[1] != m:
            raise ValueError(f"user_emb shape {self.user_emb.shape}: expected [U, {m}, d]")
        if self.item_emb.ndim != 3 or self.item_emb.shape[1] != m:
            raise ValueError(f"item_emb shape {self.item_emb.shape}: expected [I, {m}, d]")
        if self.weights.shape != (self.item_emb.shape[0], m):
            raise ValueError(f"weights shape {self.weights.shape}: expected [I, {m}]")


def bpr_reliability(
    train: np.ndarray,
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    weights: np.ndarray,
    *,
    tau_conf: float,
    negatives: int = 4,
    seed: int = 0,
    chunk: int = 65536,
) -> np.ndarray:
    """Eq. 6 targets accumulated per item, [I, M] float64 (see the module docstring)."""
    import torch

    from trainer import losses

    n_items, n_ch = item_emb.shape[0], item_emb.shape[1]
    rng = np.random.default_rng(seed)
    users = np.repeat(train[:, 0], negatives)
    pos = np.repeat(train[:, 1], negatives)
    neg = rng.integers(0, n_items, size=len(pos))
    num = np.zeros((n_items, n_ch))
    den = np.zeros(n_items)
    ue = torch.from_numpy(np.asarray(user_emb, np.float32))
    ie = torch.from_numpy(np.asarray(item_emb, np.float32))
    w = torch.from_numpy(np.asarray(weights, np.float32))
    with torch.no_grad():
        for s in range(0, len(pos), chunk):
            u = torch.from_numpy(users[s : s + chunk])
            i = torch.from_numpy(pos[s : s + chunk])
            k = torch.from_numpy(neg[s : s + chunk])
            pos_s = losses.modality_scores(ue[u], ie[i])  # [B, M] Eq. 2
            neg_s = losses.modality_scores(ue[u], ie[k])
            z, valid = losses.reliability_target(losses.rating_gap(pos_s, neg_s))  # Eqs. 5-6
            y_pos = losses.fused_score(pos_s, w[i])  # Eq. 3
            y_neg = losses.fused_score(neg_s, w[k])
            g = losses.confidence(y_pos, y_neg, tau_conf) * valid  # Eq. 7, invalid rows 0
            ii = i.numpy()
            np.add.at(num, ii, (g[:, None] * z).double().numpy())
            np.add.at(den, ii, g.double().numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den[:, None] > 0, num / den[:, None], np.nan)


def swap_item_rows(
    item_emb: np.ndarray, channels: list[str], donors: dict[str, np.ndarray]
) -> np.ndarray:
    """A copy of item_emb whose channel-m rows of injected items are their donors' rows.

    Simulates, in the trained model's space, content swapped after training: the injected
    item's channel embedding becomes the donor item's (``donors[m][i]`` = donor or -1).
    """
    out = np.array(item_emb, copy=True)
    for m, donor in donors.items():
        if m not in channels:
            continue
        c = channels.index(m)
        rows = np.flatnonzero(donor >= 0)
        out[rows, c] = item_emb[donor[rows], c]
    return out
