"""Baselines: BPR-MF, LightGCN (ID only) and VBPR, each as channels of the common interface.

- BPR-MF (Rendle et al., UAI'09): one channel ``id``, y_ui = x_u . x_i.
- LightGCN (He et al., SIGIR'20): one channel ``id``, layer-mean propagation over A_hat.

BPR-MF and LightGCN regularise as MMRec's implementations do (the yardstick they are read
against): ``losses.embedding_norm_reg`` of the batch's layer-0 ID rows, whose weights are
MMRec's (BPR-MF 1.0 / 0.1, LightGCN 1e-2 .. 1e-6), not those of a squared L2.
- VBPR (He & McAuley, AAAI'16): channel ``id`` plus one content channel per modality,
  y_ui = x_u . x_i + sum_m theta_u^m . (E_m f_i^m). MMRec concatenates the features into one
  projection; a projection per modality is the same model family and lets explanations
  speak per modality.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer import losses
from trainer.graphs import SparseOp
from trainer.models.base import Recommender, batch_l2, xavier_embedding


class MF(Recommender):
    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__(n_users, n_items, ["id"], dim)
        self.user = xavier_embedding(n_users, dim)
        self.item = xavier_embedding(n_items, dim)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user[:, None, :], self.item[:, None, :]

    def reg_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return losses.embedding_norm_reg(self.user[users], self.item[pos], self.item[neg])


class LightGCN(Recommender):
    def __init__(self, n_users: int, n_items: int, dim: int, adj: SparseOp, n_layers: int) -> None:
        super().__init__(n_users, n_items, ["id"], dim)
        self.user = xavier_embedding(n_users, dim)
        self.item = xavier_embedding(n_items, dim)
        self.adj = adj
        self.n_layers = n_layers

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.user, self.item], 0)  # [n_u + n_i, d]
        total = x
        for _ in range(self.n_layers):
            x = self.adj(x)
            total = total + x
        out = total / (self.n_layers + 1)
        return out[: self.n_users, None, :], out[self.n_users :, None, :]

    def reg_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return losses.embedding_norm_reg(self.user[users], self.item[pos], self.item[neg])


class VBPR(Recommender):
    def __init__(
        self, n_users: int, n_items: int, dim: int, features: dict[str, torch.Tensor]
    ) -> None:
        super().__init__(n_users, n_items, ["id", *features], dim)
        self.user = xavier_embedding(n_users, dim * len(self.channels))
        self.item = xavier_embedding(n_items, dim)
        self.features = features
        self.proj = nn.ModuleDict({m: nn.Linear(f.shape[1], dim) for m, f in features.items()})
        for lin in self.proj.values():
            nn.init.xavier_normal_(lin.weight)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        content = [self.proj[m](self.content_feature(m, f)) for m, f in self.features.items()]
        item = torch.stack([self.item, *content], 1)  # [n_i, M, d]
        user = self.user.view(self.n_users, len(self.channels), self.dim)
        return user, item

    def reg_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return batch_l2(self.user, self.item, users, pos, neg)
