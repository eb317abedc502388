"""CKD: counterfactual knowledge distillation from uni-modal teachers (ALGORITHMS.md 2, 2.7).

teachers  one per modality m, the same model kind trained (stage I, BPR, early stop) on
          modality m alone: ``drop`` trains it without the other modalities (with its own
          kNN item graph), ``mean`` replaces the other modalities' features by their mean
          (the paper's input ablation). Shared ID channels stay. Frozen, cached as
          folded score vectors t_ui^m = q_u^m . v_i^m, keyed by dataset fingerprint.
student   s_ui^m = unweighted channel score of m (+ shared ID channels), no extra pass (2.7)
(11)      L_SD^m = mean_B max(Dt^m - Ds^m, 0)
(12-13)   L_GD^m = BCE(sigmoid(Ds^m/tau), target sigmoid(Dt^m/tau)) on N_g random (u, j, k)
(14)      L^m = lambda_g L_GD^m + L_SD^m
(15-18)   delta^m = (weighted) channel gap; rho^m = clamp(mean delta^m / mean Dt^m, 1e-8, 10);
          lambda_m = M/(M-1) * (1 - rho^m / sum rho)   (C1, C2), detached
(19)      + lambda_kd * sum_m lambda_m L^m,  in the first stage; in a later stage II only
          with ckd_stage2, scaled by ckd_stage2_scale
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from trainer import scoring
from trainer.atomic import atomic_path
from trainer.config import BACKBONE_MODELS, STAGE2_ONLY
from trainer.errors import ConfigError
from trainer.plugins.base import Plugin, StepContext

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.data.dataset import Dataset
    from trainer.models.base import Recommender

log = logging.getLogger(__name__)

RHO_MIN, RHO_MAX, DEN_MIN = 1e-8, 10.0, 1e-8  # C1
TrainTeacher = Callable[..., Any]
"""Trains one teacher: ``(data, cfg, progress=False) -> FitResult``, i.e. trainer.train.fit,
handed in by the loop that runs the plug-in (which therefore never imports it)."""
# config fields that do not change a teacher (left out of its cache key)
_NOT_TEACHER = {"device", "threads", "eval_batch_users"}


# -- the equations ------------------------------------------------------------------------------
def specific_loss(t_gap: torch.Tensor, s_gap: torch.Tensor) -> torch.Tensor:
    """Eq. 11 as a batch mean: the student's gap should reach the teacher's.  [B] -> scalar."""
    return torch.relu(t_gap.detach() - s_gap).mean()


def generic_loss(t_gap: torch.Tensor, s_gap: torch.Tensor, tau: float) -> torch.Tensor:
    """Eqs. 12-13 as a mean: cross-entropy of sigmoid(Ds/tau) vs the constant sigmoid(Dt/tau)."""
    target = torch.sigmoid(t_gap.detach() / tau)
    return F.binary_cross_entropy_with_logits(s_gap / tau, target)


@torch.no_grad()
def modality_weights(delta: torch.Tensor, t_gap: torch.Tensor) -> torch.Tensor:
    """Eqs. 15-18 with C1-C2: lambda [M] from effects delta [B, M] and teacher gaps Dt [B, M].

    rho^m = clamp(mean(delta^m) / mean(Dt^m), 1e-8, 10); lambda_m = M/(M-1) (1 - rho^m/sum rho),
    so the weights average 1. With one modality, or any mean teacher gap <= 1e-8 (rho undefined),
    every lambda_m is 1.
    """
    m = delta.shape[1]
    den = t_gap.detach().mean(0)
    if m < 2 or bool((den <= DEN_MIN).any()):
        return torch.ones(m, dtype=delta.dtype, device=delta.device)
    rho = (delta.detach().mean(0) / den).clamp(RHO_MIN, RHO_MAX)
    return (m / (m - 1)) * (1.0 - rho / rho.sum())


# -- teachers -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Teacher:
    """A frozen uni-modal teacher as folded vectors: t_ui = q[u] . v[i]."""

    modality: str
    q: torch.Tensor  # [n_users, D]
    v: torch.Tensor  # [n_items, D]

    def scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.q[users] * self.v[items]).sum(-1)


def teacher_dataset(data: Dataset, modality: str, mode: str) -> Dataset:
    """What teacher ``modality`` may see: that modality's features only (drop), or the others
    replaced by their mean row (mean)."""
    if mode == "drop":
        return data.select_modalities([modality])
    feats = {
        m: f if m == modality else np.broadcast_to(f.mean(0, keepdims=True), f.shape).copy()
        for m, f in data.features.items()
    }
    return dataclasses.replace(data, features=feats, corruption=None)


def teacher_config(cfg: TrainConfig, data: Dataset, modality: str) -> TrainConfig:
    """The teacher's config: the same model family, unweighted (stage I only), no plug-ins."""
    model = "fusion-sum" if cfg.model in BACKBONE_MODELS else cfg.model
    kw: dict[str, Any] = {
        "model": model,
        "plugins": (),
        "seed": cfg.ckd_teacher_seed,
        "modalities": None,
        "two_stage": True,
        "stopgrad": True,
    }
    if cfg.ckd_teacher == "mean" and model in BACKBONE_MODELS:
        # the item graph from modality m alone: a kNN graph of constant features is arbitrary
        kw["graph_weights"] = {m: (1.0 if m == modality else 0.0) for m in data.features}
        kw["per_channel_graph"] = False
    elif cfg.ckd_teacher == "drop":
        kw["graph_weights"] = None
    return cfg.replace(**kw)


def teacher_key(data: Dataset, modality: str, cfg: TrainConfig) -> str:
    """Cache key: dataset fingerprint, modality, mode and every option a teacher's training
    reads (not the student's seed, model kind, stage-II or plug-in options)."""
    tcfg = teacher_config(cfg, data, modality)
    keep = {
        k: v
        for k, v in tcfg.to_dict().items()
        if k not in _NOT_TEACHER
        and (k == "model" or k not in STAGE2_ONLY)
        and not k.startswith(("ckd_", "sea_"))
    }
    key = json.dumps(
        {
            "data": data.fingerprint,
            "modalities": list(data.features),
            "teacher": modality,
            "mode": cfg.ckd_teacher,
            **keep,
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def train_teacher(
    data: Dataset, modality: str, cfg: TrainConfig, device: torch.device, fit: TrainTeacher
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Train teacher ``modality`` with ``fit``; returns (q [U, D], v [I, D], info) as float32
    numpy."""
    tcfg = teacher_config(cfg, data, modality)
    tdata = teacher_dataset(data, modality, cfg.ckd_teacher)
    result = fit(tdata, tcfg, progress=False)
    user, item, w = result.model.export_arrays()
    q, v = scoring.query_vectors(user), scoring.item_vectors(item, w)  # ALGORITHMS.md 1.8
    info = {
        "modality": modality,
        "mode": cfg.ckd_teacher,
        "dataset": data.name,
        "fingerprint": data.fingerprint,
        "channels": result.model.channels,
        "valid": result.valid,
        "test": result.test,
        "seconds": result.seconds,
    }
    return q.astype(np.float32), v.astype(np.float32), info


def load_or_train_teacher(
    data: Dataset,
    modality: str,
    cfg: TrainConfig,
    device: torch.device,
    cache_dir: Path | None,
    fit: TrainTeacher,
) -> tuple[Teacher, dict[str, Any]]:
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"ckd-teacher-{modality}-{teacher_key(data, modality, cfg)}.npz"
        if path.is_file():
            with np.load(path) as z:
                q, v, info = z["q"], z["v"], json.loads(str(z["info"]))
            info["cached"] = True
            return _to_teacher(modality, q, v, device), info
    q, v, info = train_teacher(data, modality, cfg, device, fit)
    if path is not None:
        with atomic_path(path) as tmp:  # concurrent runs never read half a teacher
            np.savez(tmp, q=q, v=v, info=np.array(json.dumps(info)))
    info["cached"] = False
    return _to_teacher(modality, q, v, device), info


def _to_teacher(modality: str, q: np.ndarray, v: np.ndarray, device: torch.device) -> Teacher:
    return Teacher(modality, torch.from_numpy(q).to(device), torch.from_numpy(v).to(device))


# -- the plug-in --------------------------------------------------------------------------------
class CKDPlugin(Plugin):
    name = "ckd"
    needs_all_users = True  # generic distillation scores random users (C5)

    def __init__(self, train_teacher: TrainTeacher | None = None) -> None:
        self.train_teacher = train_teacher  # None: losses only, no teachers to train
        self.teachers: list[Teacher] = []
        self.teacher_info: list[dict[str, Any]] = []
        self.channel_idx: list[int] = []  # student channel of each teacher's modality
        self.shared_idx: list[int] = []  # channels every teacher keeps (the ID channel)
        self.cfg: TrainConfig | None = None
        self.n_users = 0
        self.n_items = 0

    def setup(
        self,
        model: Recommender,
        data: Dataset,
        cfg: TrainConfig,
        device: torch.device,
        cache_dir: Path | None,
    ) -> None:
        self.cfg = cfg
        self.n_users, self.n_items = data.n_users, data.n_items
        modalities = [c for c in model.channels if c in data.features]
        self.channel_idx = [model.channels.index(m) for m in modalities]
        self.shared_idx = [i for i, c in enumerate(model.channels) if c not in data.features]
        if self.train_teacher is None:
            raise ConfigError("ckd: setup needs the training loop to train its teachers with")
        for m in modalities:
            teacher, info = load_or_train_teacher(
                data, m, cfg, device, cache_dir, self.train_teacher
            )
            self.teachers.append(teacher)
            self.teacher_info.append(info)
            log.info("ckd teacher %s: valid %s (cached %s)", m, info["valid"], info["cached"])

    def _student(self, scores: torch.Tensor) -> torch.Tensor:
        """s^m for every teacher modality: [B, M_channels] -> [B, M_teachers]."""
        s = scores[:, self.channel_idx]
        if self.shared_idx:
            s = s + scores[:, self.shared_idx].sum(-1, keepdim=True)
        return s

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor | None, dict[str, float]]:
        cfg = self.cfg
        assert cfg is not None, "setup() first"
        if ctx.first_stage:
            scale = 1.0
        elif cfg.ckd_stage2:
            scale = cfg.ckd_stage2_scale
        else:
            return None, {}
        from trainer.losses import modality_scores

        # specific distillation on the BPR batch
        s_gap = self._student(ctx.pos_scores) - self._student(ctx.neg_scores)  # [B, Mt]
        t_gap = torch.stack(
            [t.scores(ctx.users, ctx.pos) - t.scores(ctx.users, ctx.neg) for t in self.teachers], 1
        )
        l_sd = torch.stack([specific_loss(t_gap[:, k], s_gap[:, k]) for k in range(t_gap.shape[1])])
        # generic distillation on random (u, j, k): users without replacement, items uniform (C5)
        n_g = min(cfg.ckd_generic, self.n_users)
        if n_g > 0 and cfg.ckd_lambda_g > 0:
            dev = ctx.users.device
            u = torch.randperm(self.n_users, device=dev)[:n_g]
            j = torch.randint(self.n_items, (n_g,), device=dev)
            k = torch.randint(self.n_items, (n_g,), device=dev)
            assert ctx.user_emb is not None  # needs_all_users
            eu = ctx.user_emb[u]
            sg = self._student(modality_scores(eu, ctx.item_emb[j])) - self._student(
                modality_scores(eu, ctx.item_emb[k])
            )
            l_gd = torch.stack(
                [
                    generic_loss(t.scores(u, j) - t.scores(u, k), sg[:, c], cfg.ckd_tau)
                    for c, t in enumerate(self.teachers)
                ]
            )
        else:
            l_gd = torch.zeros_like(l_sd)
        per_modality = cfg.ckd_lambda_g * l_gd + l_sd  # Eq. 14
        # counterfactual effect of adding m: its (weighted) channel gap (2.7)
        pos_c, neg_c = ctx.pos_scores[:, self.channel_idx], ctx.neg_scores[:, self.channel_idx]
        if ctx.w_pos is not None and ctx.w_neg is not None:
            pos_c = pos_c * ctx.w_pos[:, self.channel_idx]
            neg_c = neg_c * ctx.w_neg[:, self.channel_idx]
        if cfg.ckd_reweight == "paper":
            lam = modality_weights(pos_c - neg_c, t_gap)
        else:
            lam = torch.ones_like(l_sd)
        total = scale * cfg.ckd_lambda_kd * (lam * per_modality).sum()
        stats = {"ckd": float(total.detach())}
        for c, t in enumerate(self.teachers):
            stats[f"ckd_lambda_{t.modality}"] = float(lam[c])
        return total, stats
