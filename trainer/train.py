"""The training loop: BPR with Adam, early stopping on validation Recall@20, two stages.

    stage I   L_rec + beta*reg, unweighted channel sum (Eq. 9), to early stop
    stage II  from the best stage-I state: per-item weights W, a fresh Adam over Theta and W,
              L_rec + alpha*L_cal + beta*reg (Eq. 10), to early stop
    report    test metrics of the best-validation state of the whole run (stage I's best
              when stage II never beats it: BestState)

Models without weights run stage I only; ``--no-two-stage`` runs stage II from scratch.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from trainer import losses
from trainer.config import BACKBONE_MODELS, TrainConfig
from trainer.errors import ConfigError, ModelFitError, TrainingCancelled
from trainer.evaluate import evaluate_embeddings
from trainer.metrics import csr_from_pairs
from trainer.models import Recommender, build_model
from trainer.models.fusion import fusion_for
from trainer.plugins import Plugin, StepContext, build_plugins
from trainer.reliability.prior import guided_data, weight_logit_prior
from trainer.run_state import BestState, stage1_cache_path
from trainer.sampling import TripletSampler
from trainer.threads import choose_threads

if TYPE_CHECKING:
    from trainer.data.dataset import Dataset

log = logging.getLogger(__name__)


@dataclass
class EpochReport:
    """What a progress callback sees after every epoch."""

    stage: str
    epoch: int
    max_epochs: int
    loss: float
    seconds: float
    valid: dict[str, float] | None
    best: float
    progress: float  # rough fraction of the whole run done (stages x max epochs)
    extra: dict[str, float] = field(default_factory=dict)
    # the live model after this epoch, for callbacks that inspect it (e.g. weight snapshots)
    model: Recommender | None = field(default=None, repr=False, compare=False)


@dataclass
class StageResult:
    stage: str
    best_epoch: int
    epochs_run: int
    best_valid: dict[str, float]
    seconds: float
    epoch_seconds: list[float]


@dataclass
class FitResult:
    model: Recommender
    stages: list[StageResult]
    valid: dict[str, float]
    test: dict[str, float]
    seconds: float
    history: list[EpochReport]
    best_stage: str = ""  # the stage whose best state ``model`` holds (BestState)


Callback = Callable[[EpochReport], None]


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def early_stopping(
    best: float, current: float, bad_checks: int, patience: int
) -> tuple[float, int, bool, bool]:
    """One validation check: returns (best, bad_checks, improved, stop)."""
    if current > best:
        return current, 0, True, False
    bad_checks += 1
    return best, bad_checks, False, bad_checks >= patience


def stage_plan(cfg: TrainConfig) -> list[str]:
    return fusion_for(cfg.model).stages(cfg)


@torch.no_grad()
def evaluate_model(
    model: Recommender, data: Dataset, split: str, cfg: TrainConfig
) -> dict[str, float]:
    """Full ranking of ``split`` ('valid' or 'test') with training items masked."""
    was_training = model.training
    model.eval()
    user, item = model.embeddings()
    weights = model.fusion_weights()
    model.train(was_training)
    target = data.valid if split == "valid" else data.test
    return evaluate_embeddings(
        user,
        item,
        weights,
        csr_from_pairs(data.train, data.n_users, data.n_items),
        csr_from_pairs(target, data.n_users, data.n_items),
        cfg.topk,
        cfg.eval_batch_users,
    )


def param_groups(
    model: Recommender,
    lr: float,
    weight_lr: float | None,
    plugins: list[Plugin] | tuple[Plugin, ...] = (),
) -> list[dict]:
    """Theta (and plug-in heads) at ``lr``; the per-item logits W optionally faster."""
    w = model.weight_logits
    theta = [p for p in model.parameters() if p is not w]
    theta += [p for plugin in plugins for p in plugin.parameters()]
    groups: list[dict] = [{"params": theta, "lr": lr}]
    if w is not None:
        groups.append({"params": [w], "lr": weight_lr or lr})
    return groups


def batch_loss(
    model: Recommender,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    cfg: TrainConfig,
    alpha: float,
    plugins: list[Plugin] | tuple[Plugin, ...] = (),
    stage: str = "I",
    first_stage: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_rec + alpha*L_cal + beta*reg (Eqs. 2-10) + the plug-ins' terms for one batch."""
    if any(p.needs_all_users for p in plugins):
        user_emb, item_emb = model.embeddings()
        eu = user_emb[users]
    else:
        user_emb, (eu, item_emb) = None, model.batch_embeddings(users)
    pos_scores = losses.modality_scores(eu, item_emb[pos])  # [B, M]
    neg_scores = losses.modality_scores(eu, item_emb[neg])
    w_pos, w_neg = model.item_weights(pos), model.item_weights(neg)  # distributions (L_cal)
    y_pos = losses.fused_score(pos_scores, model.fusion_weights(pos))
    y_neg = losses.fused_score(neg_scores, model.fusion_weights(neg))
    l_rec = losses.bpr_loss(y_pos, y_neg)
    loss = l_rec + cfg.reg_weight * model.reg_loss(users, pos, neg)
    stats = {"l_rec": float(l_rec.detach())}
    if alpha > 0 and w_pos is not None and w_neg is not None:
        l_cal, cal_stats = losses.calibration_from_scores(
            pos_scores,
            neg_scores,
            y_pos,
            y_neg,
            w_pos,
            w_neg,
            tau_conf=cfg.tau_conf,
            stopgrad=cfg.stopgrad,
            literal=not cfg.drop_invalid,
        )
        loss = loss + alpha * l_cal
        stats.update(l_cal=float(l_cal.detach()), **cal_stats)
    if plugins:
        ctx = StepContext(
            model, stage, first_stage, users, pos, neg, user_emb, item_emb,
            pos_scores, neg_scores, model.fusion_weights(pos), model.fusion_weights(neg),
        )  # fmt: skip
        for plugin in plugins:
            extra, plugin_stats = plugin.loss(ctx)
            if extra is not None:
                loss = loss + extra
            stats.update(plugin_stats)
    return loss, stats


def fit(
    data: Dataset,
    cfg: TrainConfig,
    *,
    callback: Callback | None = None,
    progress: bool = True,
    stage1_cache: Path | None = None,
    plugin_cache: Path | None = None,
) -> FitResult:
    """Train ``cfg.model`` on ``data`` and return the best-validation model with its metrics.

    ``stage1_cache``: a folder where the best stage-I state of the backbone models is kept,
    keyed by everything stage I depends on; fusion-sum, fusion-learned and margo with the
    same data, backbone settings and seed then share one stage I.
    ``plugin_cache``: a folder where plug-ins keep reusable helpers (CKD's teachers, keyed by
    dataset fingerprint and teacher settings).
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    # None: the cores free now (trainer/threads.py); more threads than free cores stall
    torch.set_num_threads(choose_threads(cfg.threads, torch.get_num_threads()))
    t_start = time.perf_counter()
    data, rel = guided_data(data, cfg)  # unchanged unless a reliability option is on
    model = build_model(cfg, data, device)
    if rel is not None and cfg.reliability_prior > 0 and fusion_for(cfg.model).learns_weights:
        model.weight_prior = weight_logit_prior(rel, model.channels, cfg.reliability_prior)
    plugins = build_plugins(cfg, train_teacher=fit)  # CKD trains its teachers with this loop
    for plugin in plugins:  # may train helpers (CKD teachers) and install modules (SEA)
        # forked RNG: the run is the same whether CKD's teachers come from the cache or not
        with torch.random.fork_rng(devices=[]):
            plugin.setup(model, data, cfg, device, plugin_cache)
    plan = stage_plan(cfg)
    if fusion_for(cfg.model).learns_weights and len(model.channels) == 1:
        log.warning(
            "%s with one channel: its weight is always 1, stage II only fine-tunes", cfg.model
        )
    history: list[EpochReport] = []
    stages: list[StageResult] = []
    best_run = BestState()
    for s_idx, stage in enumerate(plan):
        cached = (
            stage1_cache_path(stage1_cache, cfg, data)
            if stage == "I" and cfg.model in BACKBONE_MODELS
            else None
        )
        if cached is not None and cached.is_file():
            saved = torch.load(cached, map_location=device, weights_only=False)
            model.load_state_dict(saved["state"])
            for plugin in plugins:
                plugin.load_state_dict(saved.get("plugins", {}).get(plugin.name, {}))
            stages.append(saved["result"])
            best_run.offer(model, saved["result"], cfg.select_metric)
            continue
        result = _run_stage(
            model, data, cfg, stage, s_idx, len(plan), history, callback, progress, plugins
        )
        stages.append(result)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            state = {p.name: p.state_dict() for p in plugins}
            torch.save({"state": model.state_dict(), "result": result, "plugins": state}, tmp)
            tmp.replace(cached)
        best_run.offer(model, result, cfg.select_metric)

    best_run.restore(model)
    test = evaluate_model(model, data, "test", cfg)
    return FitResult(
        model=model,
        stages=stages,
        valid=best_run.valid,
        test=test,
        seconds=time.perf_counter() - t_start,
        history=history,
        best_stage=best_run.stage,
    )


def _run_stage(
    model: Recommender,
    data: Dataset,
    cfg: TrainConfig,
    stage: str,
    s_idx: int,
    n_stages: int,
    history: list[EpochReport],
    callback: Callback | None,
    progress: bool,
    plugins: list[Plugin] | tuple[Plugin, ...] = (),
) -> StageResult:
    """Train one stage to early stop; leaves ``model`` in the stage's best-validation state."""
    device = next(model.parameters()).device
    select = cfg.select_metric
    # -- set up the stage: weights (II), its own sampler stream and a fresh optimiser ----------
    fusion = fusion_for(cfg.model)
    fusion.start_stage(model, cfg, stage)  # stage II of a learned fusion creates W
    torch.manual_seed(cfg.seed + s_idx)
    sampler = TripletSampler(data.train, data.n_items, cfg.seed + s_idx, cfg.n_negatives)
    epoch_rng = np.random.default_rng([cfg.seed, s_idx])  # per-epoch model randomness
    alpha = fusion.calibration_weight(cfg, stage)
    lr = cfg.stage2_lr if stage == "II" else cfg.lr
    # fused: one kernel for all parameters (the per-tensor Adam was ~10% of a Baby-sized step)
    opt = torch.optim.Adam(param_groups(model, lr, cfg.weight_lr, plugins), fused=True)
    best, bad, best_epoch = float("-inf"), 0, 0
    best_state = copy.deepcopy(model.state_dict())
    best_valid: dict[str, float] = {}
    epoch_seconds: list[float] = []
    t_stage = time.perf_counter()
    bar = tqdm(
        total=cfg.epochs, desc=f"{cfg.model} stage {stage}", disable=not progress, leave=False
    )
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        # -- one pass over the training pairs -----------------------------------------------
        t0 = time.perf_counter()
        model.train()
        model.start_epoch(epoch_rng)  # e.g. FREEDOM's degree-pruned graph of this epoch
        total, n_b, extra = 0.0, 0, {}
        for u, i, k in sampler.epoch(cfg.batch_size):
            ut, it, kt = (torch.from_numpy(a).to(device) for a in (u, i, k))
            loss, extra = batch_loss(
                model, ut, it, kt, cfg, alpha, plugins, stage, first_stage=s_idx == 0
            )
            if not torch.isfinite(loss):
                raise ModelFitError(
                    f"stage {stage} epoch {epoch}: loss is {float(loss)}; try a lower --lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for plugin in plugins:
                plugin.before_step()  # e.g. SEA's CLUB inner steps, on their own optimiser
            opt.step()
            total += float(loss.detach())
            n_b += 1
        epoch_seconds.append(time.perf_counter() - t0)
        # -- validate and early-stop ----------------------------------------------------------
        valid, stop = None, False
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            valid = evaluate_model(model, data, "valid", cfg)
            best, bad, improved, stop = early_stopping(best, valid[select], bad, cfg.patience)
            if improved:
                best_epoch, best_valid = epoch, valid
                best_state = copy.deepcopy(model.state_dict())
        report = EpochReport(
            stage=stage,
            epoch=epoch,
            max_epochs=cfg.epochs,
            loss=total / max(n_b, 1),
            seconds=epoch_seconds[-1],
            valid=valid,
            best=best,
            progress=(s_idx + epoch / cfg.epochs) / n_stages,
            extra=extra,
            model=model,
        )
        history.append(report)
        bar.update(1)
        r20 = (valid or {}).get(select, float("nan"))
        bar.set_postfix(loss=f"{report.loss:.4f}", r20=f"{r20:.4f}", best=f"{best:.4f}")
        if callback is not None:
            callback(report)  # may raise TrainingCancelled
        if stop:
            break
    bar.close()
    # -- keep the best state of this stage -------------------------------------------------------
    model.load_state_dict(best_state)
    return StageResult(
        stage, best_epoch, epoch, best_valid, time.perf_counter() - t_stage, epoch_seconds
    )


__all__ = [
    "EpochReport",
    "FitResult",
    "StageResult",
    "TrainingCancelled",
    "early_stopping",
    "fit",
    "stage1_cache_path",
    "stage_plan",
]
