"""Training configuration: every default in one commented block (saved into each bundle)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from trainer.errors import ConfigError

MODELS = ("bpr", "lightgcn", "vbpr", "fusion-sum", "fusion-learned", "margo")
# models whose scores are a per-item weighted sum of channel scores (stage II exists)
WEIGHTED_MODELS = ("fusion-learned", "margo")
BACKBONE_MODELS = ("fusion-sum", "fusion-learned", "margo")


@dataclass
class TrainConfig:
    # -- what to train ------------------------------------------------------------------
    model: str = "margo"
    modalities: list[str] | None = None  # None: every modality of the dataset
    id_channel: bool = False  # ALGORITHMS.md 1.9: a free ID channel beside the content ones
    # -- backbone (DRAGON-style, ALGORITHMS.md 1.2) ---------------------------------------
    dim: int = 64  # d: per-channel embedding size
    hidden: int = 256  # D1: hidden width of the feature projection
    n_layers: int = 2  # D3: LightGCN layers on the user-item graph
    knn_k: int = 10  # D5: item-item kNN (includes the item itself, as DRAGON)
    graph_weights: dict[str, float] | None = None  # D5 mixing; None: image 0.1, rest share 0.9
    per_channel_graph: bool = False  # each channel over its own modality's kNN graph
    user_graph_k: int = 40  # D6: co-occurrence neighbours per user
    # -- optimisation -----------------------------------------------------------------------
    lr: float = 1e-3  # Adam, both stages (MMRec's overall default; the paper uses 1e-4)
    lr_stage2: float | None = None  # None: same as lr
    batch_size: int = 2048
    epochs: int = 200  # per stage, upper bound
    patience: int = 20  # validation checks without a better Recall@20 before stopping
    eval_every: int = 1  # epochs between validation checks
    reg_weight: float = 1e-3  # beta (A4): beta * sum_m mean(P^m[u]^2)
    # -- MARGO (ALGORITHMS.md 1.3-1.6) -------------------------------------------------------
    alpha: float = 0.1  # weight of L_cal (Eq. 10)
    tau_conf: float = 5.0  # confidence scale (Eq. 7)
    two_stage: bool = True  # False: "w/o two-stage", weights and L_cal from the first epoch
    stopgrad: bool = True  # False: "w/o nograd", gradients flow through z and gamma
    drop_invalid: bool = True  # A1: drop triplets whose every gap is negative from L_cal
    weight_init_std: float = 0.01  # A5: W ~ N(0, 0.01^2)
    scale_weights: bool = True  # A5 variant: fuse with M * softmax(W) (uniform = stage-I sum)
    weight_lr: float | None = None  # Adam lr of the per-item logits W; None: the stage's lr
    # -- training plug-ins (trainer/plugins; ALGORITHMS.md 2-4) ----------------------------------
    plugins: tuple[str, ...] = ()  # "ckd", "sea", or both
    ckd_lambda_kd: float = 0.01  # lambda_kd, total distillation weight (Eq. 19; code kd_ratio)
    ckd_lambda_g: float = 5.0  # lambda_g, generic vs specific distillation (Eq. 14; code kl)
    ckd_tau: float = 0.1  # tau_kd of the generic targets (Eq. 13)
    ckd_generic: int = 5000  # N_g random (u, j, k) triples per step (C5)
    ckd_reweight: str = "paper"  # counterfactual lambda_m (Eqs. 15-18, C1-C2) or "none"
    ckd_teacher: str = "drop"  # teachers: "drop" the other modalities or "mean" them (2.7)
    ckd_teacher_seed: int = 0  # teachers are shared by every student seed (cached)
    ckd_stage2: bool = False  # also distil in stage II (an ablation: flattens z, 2.7)
    ckd_stage2_scale: float = 0.1  # lambda_kd multiplier in stage II
    sea_alpha: float = 0.012  # alpha_s, Solosim alignment weight (SEA code default)
    sea_beta: float = 0.006  # beta_s, generic/unique distancing weight (SEA code default)
    sea_tau: float = 0.2  # tau_cl of the alignment
    sea_distance: str = "club"  # "club" (vCLUB upper bound) or "neg-l2" (cheap, Eq. 30)
    sea_align: str = "solosim"  # "solosim" (one direction) or "infonce" (both directions)
    sea_club_steps: int = 5  # inner Adam steps of the CLUB estimator per batch (paper: 50)
    sea_club_hidden: int = 16  # hidden width of q_theta
    sea_scope: str = "batch"  # "batch": the batch's items; "full": every item (SEA code, costly)
    # -- run ----------------------------------------------------------------------------------
    seed: int = 999
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads; None leaves torch's default
    eval_batch_users: int = 2048
    topk: tuple[int, ...] = (10, 20, 50)
    select_metric: str = "recall@20"

    def validate(self) -> TrainConfig:
        if self.model not in MODELS:
            raise ConfigError(
                f"--model: unknown model {self.model!r}; choose from {', '.join(MODELS)}"
            )
        checks = {
            "dim": self.dim > 0,
            "batch_size": self.batch_size > 0,
            "epochs": self.epochs > 0,
            "patience": self.patience > 0,
            "eval_every": self.eval_every > 0,
            "lr": self.lr > 0,
            "knn_k": self.knn_k > 0,
            "tau_conf": self.tau_conf > 0,
            "alpha": self.alpha >= 0,
            "reg_weight": self.reg_weight >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"--{name.replace('_', '-')}: invalid value {getattr(self, name)!r}"
                )
        self.plugins = tuple(self.plugins)
        from trainer.plugins import check_plugins

        check_plugins(self)
        if self.select_metric not in {f"{m}@{k}" for m in ("recall", "ndcg") for k in self.topk}:
            raise ConfigError(f"select_metric {self.select_metric!r} is not a computed metric")
        if self.model not in WEIGHTED_MODELS and (not self.two_stage or not self.stopgrad):
            raise ConfigError(
                "--no-two-stage / --no-stopgrad apply to margo and fusion-learned only"
            )
        return self

    @property
    def weighted(self) -> bool:
        return self.model in WEIGHTED_MODELS

    @property
    def stage2_lr(self) -> float:
        return self.lr_stage2 if self.lr_stage2 is not None else self.lr

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["topk"] = list(self.topk)
        d["plugins"] = list(self.plugins)
        return d
