"""Export a trained model to a model bundle (format: trainer/bundle.py), with an export check.

Every export also scores each item's modalities with trainer/reliability (the bundle's
reliability score and confidence). It costs a few training epochs (mlsmall-mmrec: 6 s against
1.9 s per epoch; amazon-scientific-mmrec: 25 s against 8.7 s per epoch, 1 thread), a few per
cent of a training run that early-stops with patience 20; a dataset too small to score gets a
bundle that says why it has no score instead of a failed export.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainer import scoring
from trainer.bundle import RELIABILITY_CONFIDENCE, RELIABILITY_SCORE, write_bundle
from trainer.config import TrainConfig
from trainer.errors import BundleError
from trainer.knn import SEARCH_RANK, channel_graph_mixing
from trainer.metrics import csr_from_pairs
from trainer.reliability import ModelArrays, ReliabilityConfig, score_items
from trainer.threads import blas_threads

if TYPE_CHECKING:
    from trainer.data.dataset import Dataset
    from trainer.train import FitResult

EXPORT_TOLERANCE = 1e-4  # ALGORITHMS.md 1.8 step 7: max |Q K^T - model score|


@torch.no_grad()
def check_scoring_identity(
    model: Any, user_emb: np.ndarray, item_emb: np.ndarray, weights: np.ndarray, n_check: int = 512
) -> float:
    """Max |q_u . v_i - y_ui| over up to ``n_check`` users (y_ui: the model's own forward).

    q_u and v_i are folded from the exported arrays by ``trainer.scoring``, the code every
    reader of the bundle ranks with.
    """
    model.eval()
    u_t, i_t = model.embeddings()
    w = model.fusion_weights()
    users = torch.arange(min(n_check, u_t.shape[0]))
    # model scoring path: sum_m w_i^m (e_u^m . e_i^m), Eqs. 2-3 over all items
    per_channel = torch.einsum("umd,imd->uim", u_t[users], i_t)
    ref = per_channel.sum(-1) if w is None else (per_channel * w[None]).sum(-1)
    q = scoring.query_vectors(user_emb[: len(users)])
    v = scoring.item_vectors(item_emb, weights)
    return float(np.abs(q @ v.T - ref.cpu().numpy()).max())


def reliability_part(
    data: Dataset,
    cfg: TrainConfig,
    channels: list[str],
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    weights: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The bundle's reliability arrays and manifest fields: the score and confidence per
    (item, channel) from trainer/reliability with the trained model's own signals, or the
    reason the bundle has none (manifest ``reliability_absent``)."""
    if not any(c in data.features for c in channels):
        return {}, {
            "reliability_absent": f"model {cfg.model} fuses no content modality "
            f"({', '.join(channels)}): there is no content to score"
        }
    started = time.perf_counter()
    model = ModelArrays(channels, user_emb, item_emb, weights)
    try:
        scores = score_items(data, model, ReliabilityConfig(seed=cfg.seed))
    except ValueError as exc:  # a dataset too small to score: say so, keep the model
        return {}, {"reliability_absent": f"the trainer could not score this dataset: {exc}"}
    score, confidence = scores.for_channels(channels)
    method = {**scores.method, "seconds": round(time.perf_counter() - started, 3)}
    arrays = {RELIABILITY_SCORE: score, RELIABILITY_CONFIDENCE: confidence}
    return arrays, {"reliability": {"method": method}}


def fold_in_part(model: Any, cfg: TrainConfig) -> dict[str, Any]:
    """The manifest's ``fold_in`` record (trainer/bundle_foldin.py) for a model with a feature
    graph: the kNN k and each channel's graph mixing, as ``trainer.models`` built them."""
    spec = model.fold_in_spec()
    if spec is None:
        return {}
    modalities = list(model.features)
    graphs = channel_graph_mixing(
        modalities, list(model.channels), per_channel=cfg.per_channel_graph,
        weights=cfg.graph_weights,
    )
    return {
        "fold_in": {
            **spec,
            "knn_k": cfg.knn_k,
            "modalities": modalities,
            "graphs": graphs,
            "standardized": bool(model.input_affine),
            "knn_dtype": "float16",
            "search_rank": SEARCH_RANK,
        }
    }


def export_model(
    result: FitResult, data: Dataset, cfg: TrainConfig, out: str | Path, *, overwrite: bool = False
) -> Path:
    """Write ``result.model`` as a verified bundle at ``out`` (atomically)."""
    model = result.model
    user_emb, item_emb, weights = model.export_arrays()
    err = check_scoring_identity(model, user_emb, item_emb, weights)
    if err > EXPORT_TOLERANCE:
        raise BundleError(
            f"{out}: export check failed, max |QK^T - score| = {err:.2e} > {EXPORT_TOLERANCE}"
        )

    everything = np.concatenate([data.train, data.valid, data.test])
    seen = csr_from_pairs(everything, data.n_users, data.n_items)
    arrays: dict[str, np.ndarray] = {
        "user_emb": user_emb,
        "item_emb": item_emb,
        "item_weights": weights,
        "item_pos_count": np.bincount(data.train[:, 1], minlength=data.n_items).astype(np.int32),
        "item_popularity": np.bincount(everything[:, 1], minlength=data.n_items).astype(np.int32),
        "seen_indptr": seen.indptr.astype(np.int64),
        "seen_indices": seen.indices.astype(np.int32),
        **model.export_extras(),
    }
    with blas_threads(torch.get_num_threads()):  # fit's count, chosen for the machine's load
        rel_arrays, rel_manifest = reliability_part(
            data, cfg, list(model.channels), user_emb, item_emb, weights
        )
    arrays.update(rel_arrays)
    feature_dims = {m: int(f.shape[1]) for m, f in data.features.items()}
    manifest = {
        **rel_manifest,
        **fold_in_part(model, cfg),
        "model": cfg.model,
        "channels": [{"name": c, "feature_dim": feature_dims.get(c)} for c in model.channels],
        "weights": "learned" if model.weight_logits is not None else "none",
        # item_weights = weight_scale * softmax(W): divide by it for the per-item distribution
        "weight_scale": model.weight_scale,
        "seen": "all interactions of the dataset (train, valid and test)",
        "hyperparameters": cfg.to_dict(),
        "dataset": {
            "name": data.name,
            "path": str(data.path) if data.path else None,
            "fingerprint": data.fingerprint,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_train": int(len(data.train)),
            "n_valid": int(len(data.valid)),
            "n_test": int(len(data.test)),
        },
        "metrics": {"valid": result.valid, "test": result.test},
        "training": {
            "seconds": round(result.seconds, 3),
            "stages": [
                {
                    "stage": s.stage,
                    "best_epoch": s.best_epoch,
                    "epochs_run": s.epochs_run,
                    "seconds": round(s.seconds, 3),
                    "median_epoch_seconds": float(np.median(s.epoch_seconds))
                    if s.epoch_seconds
                    else None,
                }
                for s in result.stages
            ],
            "export_check_max_abs_error": err,
        },
    }
    return write_bundle(
        out,
        manifest=manifest,
        arrays=arrays,
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        item_meta=data.item_meta,
        overwrite=overwrite,
    )
