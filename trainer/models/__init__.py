"""Model zoo: ``build_model`` turns a TrainConfig and a Dataset into a Recommender."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch

from trainer import graphs
from trainer.config import BACKBONE_MODELS, TrainConfig
from trainer.errors import ConfigError
from trainer.models.backbone import GraphBackbone, standardize_columns, unnormalised_reason
from trainer.models.base import Recommender
from trainer.models.baselines import MF, VBPR, LightGCN
from trainer.models.freedom import FreedomBackbone
from trainer.models.fusion import FUSIONS, fusion_for

if TYPE_CHECKING:
    from trainer.data.dataset import Dataset

log = logging.getLogger(__name__)

__all__ = [
    "FUSIONS",
    "FreedomBackbone",
    "GraphBackbone",
    "LightGCN",
    "MF",
    "Recommender",
    "VBPR",
    "build_model",
    "fusion_for",
    "resolved_feature_norm",
]


Affine = dict[str, tuple[np.ndarray, np.ndarray]]


def resolved_feature_norm(cfg: TrainConfig, data: Dataset) -> str:
    """``cfg.feature_norm`` with "auto" resolved on ``data``: "standardize" when any modality
    looks unnormalised (all modalities or none: a bundle's fold-in is standardised or not)."""
    if cfg.feature_norm != "auto":
        return cfg.feature_norm
    why = {m: r for m, f in data.features.items() if (r := unnormalised_reason(f))}
    if why:
        log.info(
            "feature_norm auto: standardising (%s)", "; ".join(f"{m}: {r}" for m, r in why.items())
        )
    return "standardize" if why else "none"


def _raw_features(data: Dataset, cfg: TrainConfig) -> tuple[dict[str, np.ndarray], Affine]:
    """The features the model and its kNN graphs see (``cfg.feature_norm``), with the
    standardisation (mu, s) per modality that cold-start export folds back in."""
    if not data.features:
        raise ConfigError(
            f"dataset {data.name!r} has no *_feat.npy modality; a multimodal model needs one"
        )
    if resolved_feature_norm(cfg, data) == "none":
        return {m: np.ascontiguousarray(f, np.float32) for m, f in data.features.items()}, {}
    out, affine = {}, {}
    for m, f in data.features.items():
        out[m], mu, scale = standardize_columns(f)
        affine[m] = (mu, scale)
    return out, affine


def _tensors(features: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {m: torch.from_numpy(f).to(device) for m, f in features.items()}


def build_model(cfg: TrainConfig, data: Dataset, device: torch.device | str = "cpu") -> Recommender:
    """Build the model named by ``cfg.model`` with its fixed graphs, on ``device``."""
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    if cfg.model == "bpr":
        model: Recommender = MF(data.n_users, data.n_items, cfg.dim)
    elif cfg.model == "lightgcn":
        adj = graphs.normalized_adjacency(data.n_users, data.n_items, data.train)
        model = LightGCN(
            data.n_users, data.n_items, cfg.dim, graphs.SparseOp(adj, device), cfg.n_layers
        )
    elif cfg.model == "vbpr":
        feats = _tensors(_raw_features(data, cfg)[0], device)
        model = VBPR(data.n_users, data.n_items, cfg.dim, feats)
    elif cfg.model in BACKBONE_MODELS:
        model = _build_backbone(cfg, data, device)
    else:  # validated earlier; kept for direct callers
        raise ConfigError(f"unknown model {cfg.model!r}")
    return model.to(device)


def _build_backbone(cfg: TrainConfig, data: Dataset, device: torch.device) -> Recommender:
    """The multimodal backbone named by ``cfg.backbone`` (DRAGON- or FREEDOM-style)."""
    raw, affine = _raw_features(data, cfg)
    features = _tensors(raw, device)
    names = list(features)
    adj = graphs.normalized_adjacency(data.n_users, data.n_items, data.train)
    knn = {m: graphs.knn_graph(raw[m], cfg.knn_k) for m in names}
    if cfg.per_channel_graph:
        mixed_for_id = graphs.mixed_item_graph(knn, graphs.default_graph_weights(names))
        item_graphs: graphs.SparseOp | dict[str, graphs.SparseOp] = {
            m: graphs.SparseOp(g, device) for m, g in knn.items()
        }
        if cfg.id_channel:
            item_graphs["id"] = graphs.SparseOp(mixed_for_id, device)
    else:
        weights = cfg.graph_weights or graphs.default_graph_weights(names)
        unknown = set(weights) - set(names)
        if unknown or set(names) - set(weights):
            raise ConfigError(
                f"--graph-weights must name exactly the modalities {names}, got {sorted(weights)}"
            )
        item_graphs = graphs.SparseOp(graphs.mixed_item_graph(knn, weights), device)
    if cfg.backbone == "freedom":
        return FreedomBackbone(
            data.n_users,
            data.n_items,
            features=features,
            train=data.train,
            adj=graphs.SparseOp(adj, device),
            item_graphs=item_graphs,
            dim=cfg.dim,
            n_layers=cfg.n_layers,
            id_channel=cfg.id_channel,
            prune_ratio=cfg.prune_ratio,
            input_affine=affine,
        )
    user_graph = graphs.user_cooccurrence_graph(data.train_matrix(), cfg.user_graph_k)
    return GraphBackbone(
        data.n_users,
        data.n_items,
        features=features,
        adj=graphs.SparseOp(adj, device),
        item_graphs=item_graphs,
        user_graph=graphs.SparseOp(user_graph, device),
        dim=cfg.dim,
        hidden=cfg.hidden,
        n_layers=cfg.n_layers,
        id_channel=cfg.id_channel,
        user_graph_export=graphs.csr_arrays(user_graph),
        input_affine=affine,
    )
