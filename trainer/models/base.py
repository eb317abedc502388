"""The one model interface every recommender implements.

A model exposes M channels. For each it produces user and item embeddings e_u^m, e_i^m
(one d-vector per channel), and scores y_ui = sum_m w_i^m (e_u^m . e_i^m) (MARGO Eqs. 2-3).
Unweighted models use w = 1 (the stage-I sum of Eq. 9), so every model, from BPR-MF to
MARGO, folds into one inner product q_u . v_i for serving (ALGORITHMS.md 1.8).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import nn


class Recommender(nn.Module, ABC):
    """Base class: embeddings, optional per-item channel weights, regulariser, export."""

    def __init__(self, n_users: int, n_items: int, channels: list[str], dim: int) -> None:
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self.channels = list(channels)
        self.dim = dim
        self.weight_logits: nn.Parameter | None = None  # W [n_items, M], created for stage II
        self.weight_scale = 1.0  # fusion weights = weight_scale * softmax(W)
        # fixed [n_items, M] logits W starts from in stage II (reliability-guided fusion), or None
        self.weight_prior: torch.Tensor | None = None
        # optional learnable per-modality transform before the feature projection (SEA's T^m)
        self.feature_transform: nn.ModuleDict | None = None
        # T^m(F^m) of the latest forward pass, for plug-ins that regularise it (no second pass)
        self.transformed: dict[str, torch.Tensor] = {}

    # -- what each model provides ---------------------------------------------------------
    @abstractmethod
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Full forward pass: (user [n_users, M, d], item [n_items, M, d])."""

    def batch_embeddings(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training step's forward pass: (e_u of ``users`` [B, M, d], all items [I, M, d]).

        Same values as ``embeddings()`` indexed by ``users``; models whose per-user work is
        costly (the backbone's user graph) compute only the batch's rows.
        """
        user, item = self.embeddings()
        return user[users], item

    def start_epoch(self, rng: np.random.Generator) -> None:
        """Called before every training epoch; models with per-epoch randomness (FREEDOM's
        edge pruning) draw it from ``rng``, a seeded stream of the stage."""

    @abstractmethod
    def reg_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """The L2 regulariser of the batch (without the beta factor)."""

    def export_extras(self) -> dict[str, np.ndarray]:
        """Optional arrays for the model bundle (fixed graphs, cold-start projections)."""
        return {}

    def fold_in_spec(self) -> dict[str, object] | None:
        """How a new item's state is formed (manifest ``fold_in``: backbone, layer0,
        self_scale; trainer/foldin), or None for a model without a feature graph."""
        return None

    def content_feature(self, modality: str, feature: torch.Tensor) -> torch.Tensor:
        """The raw feature rows of ``modality`` as the model consumes them (after T^m if set)."""
        t = self.feature_transform
        if t is None or modality not in t:
            return feature
        out = t[modality](feature)
        self.transformed[modality] = out
        return out

    # -- MARGO's per-item weights (A5) ------------------------------------------------------
    def enable_weights(
        self, std: float, generator: torch.Generator | None = None, scale: float = 1.0
    ) -> None:
        """Create the free logits W ~ N(0, std^2); softmax(W[i]) is item i's weight vector.

        ``scale`` multiplies the weights where scores are fused (A5's variant: with scale M,
        near-uniform weights reproduce the stage-I sum instead of halving every score).
        """
        w = torch.randn(self.n_items, len(self.channels), generator=generator) * std
        if self.weight_prior is not None:
            w = w + self.weight_prior
        device = next(self.parameters()).device
        self.weight_logits = nn.Parameter(w.to(device))
        self.weight_scale = scale

    def item_weights(self, items: torch.Tensor | None = None) -> torch.Tensor | None:
        """softmax(W[items]) [B, M]; None while the model is unweighted."""
        if self.weight_logits is None:
            return None
        logits = self.weight_logits if items is None else self.weight_logits[items]
        return torch.softmax(logits, dim=-1)

    def fusion_weights(self, items: torch.Tensor | None = None) -> torch.Tensor | None:
        """The weights scores are fused with (Eq. 3): weight_scale * softmax(W[items])."""
        w = self.item_weights(items)
        return w if w is None or self.weight_scale == 1.0 else w * self.weight_scale

    @torch.no_grad()
    def export_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user_emb [U, M, d], item_emb [I, M, d], fusion weights [I, M]) as float32 numpy."""
        was_training = self.training
        self.eval()
        user, item = self.embeddings()
        w = self.fusion_weights()
        weights = torch.ones(self.n_items, len(self.channels)) if w is None else w
        self.train(was_training)
        return (
            user.float().cpu().numpy(),
            item.float().cpu().numpy(),
            weights.float().cpu().numpy(),
        )


def xavier_embedding(n: int, dim: int) -> nn.Parameter:
    w = torch.empty(n, dim)
    nn.init.xavier_normal_(w)
    return nn.Parameter(w)


def batch_l2(
    user: torch.Tensor,
    item: torch.Tensor,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
) -> torch.Tensor:
    """Half the mean squared norm of the batch's ID embeddings (BPR-MF's regulariser)."""
    sq = user[users].pow(2).sum(-1) + item[pos].pow(2).sum(-1) + item[neg].pow(2).sum(-1)
    return sq.mean() / 2
