"""Training configuration: the one hyper-parameter schema (saved into each bundle).

``TrainConfig`` is a pydantic model: every field's default, bounds and one-line meaning live
here, and nothing else declares them again. ``margo train`` generates its flags from the fields
(trainer/cli/flags.py), POST /retrain accepts the subset ``RETRAIN_FIELDS`` with the same bounds
(``subset_model``, used by service/schemas.py), and the Makefile demo and the benchmarks build
their configs through it. Validation imports no torch (plug-in option checks included).

A config is checked when it is built: a bad value raises ``InvalidConfig`` (a ConfigError) whose
message names the ``--flag``; ``describe(name)`` names fields another way (the API uses
``hyperparameters.<field>``). Adding a hyper-parameter is one line below (type, ``Field`` bounds,
``description``); ``Flag(...)`` only when its command line is not ``--field-name``; its name in
``RETRAIN_FIELDS`` when a retrain request may set it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainer import option_schema
from trainer.errors import ConfigError
from trainer.option_schema import FieldProblem, Flag, InvalidConfig

__all__ = [
    "BACKBONE_MODELS", "MODELS", "MULTIMODAL_MODELS", "PLUGINS", "RETRAIN_FIELDS", "STAGE2_ONLY",
    "WEIGHTED_MODELS", "FieldProblem", "Flag", "InvalidConfig", "ModelName", "TrainConfig",
    "flag_name", "flag_of", "read_config_file", "subset_model",
]  # fmt: skip

ModelName = Literal["bpr", "lightgcn", "vbpr", "fusion-sum", "fusion-learned", "margo"]
MODELS: tuple[str, ...] = get_args(ModelName)
# models whose scores are a per-item weighted sum of channel scores (stage II exists)
WEIGHTED_MODELS = ("fusion-learned", "margo")
BACKBONE_MODELS = ("fusion-sum", "fusion-learned", "margo")
PLUGINS = ("ckd", "sea")
# models with content channels a plug-in can work on (bpr and lightgcn have only IDs)
MULTIMODAL_MODELS = ("vbpr", "fusion-sum", "fusion-learned", "margo")


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy seeds are unsigned 32-bit


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # -- what to train ------------------------------------------------------------------
    model: ModelName = Field("margo", description="model kind")
    modalities: Annotated[list[str] | None, Flag(metavar="MOD,...")] = Field(
        None, min_length=1, description="subset of the dataset's modalities (default: all)"
    )
    # the default model is bench/results/quality.md's validation winner over the datasets:
    # margo with the ID channel on the FREEDOM backbone (alpha 0.01, weight_lr 1e-2, 300 epochs)
    id_channel: bool = Field(
        True, description="a free ID channel beside the content ones (ALGORITHMS.md 1.9; "
        "--no-id-channel: the paper's content-only channels)",
    )
    # -- backbone (DRAGON-style, ALGORITHMS.md 1.2) ---------------------------------------
    backbone: Literal["dragon", "freedom"] = Field(
        "freedom",
        description="multimodal backbone: DRAGON-style (ALGORITHMS.md 1.2) or FREEDOM-style "
        "(trainer/models/freedom.py)",
    )
    # 0.5 by issue 17 (FREEDOM's 0.8 before): dropping 80% of the edges, popular items' first,
    # starved Zipf-like catalogues; 0.5 won on validation over both MMRec sets (margo+id, 3
    # seeds: mlsmall 0.3070 vs 0.3014, amazon-scientific 0.1987 vs 0.1974) and synth-skewed
    prune_ratio: float = Field(
        0.5, ge=0, lt=1, description="freedom: fraction of user-item edges dropped per epoch "
        "by degree-sensitive pruning",
    )
    # auto by issue 17: raw features unless one modality looks unnormalised (the MMRec sets never
    # do: the same runs as "none"); there standardising lifted synth-skewed's validation
    # Recall@20 from 0.51 to 0.59, while always standardising lost on amazon-scientific's
    # validation (seed 0: 0.1983 vs 0.2014) and tied on mlsmall's (bench/results/quality.md)
    feature_norm: Literal["none", "standardize", "auto"] = Field(
        "auto", description="none: raw features as given; standardize: every column "
        "standardised (z-score / sqrt(d_m)) before the kNN graphs and projections; auto: "
        "standardize when a modality looks unnormalised (trainer/models/backbone.py)",
    )
    # d 64 although validation prefers d 128 (bench/results/quality.md): on the Baby shape d 128
    # doubles the FREEDOM epoch (every item's 4096-d feature is projected to d per batch), past
    # issue 17's 10 s target; the default is validation's pick among the d 64 rows
    dim: int = Field(64, ge=1, le=1024, description="d: embedding size per channel")
    hidden: int = Field(256, ge=1, le=8192, description="D1: hidden width of the projection")
    n_layers: Annotated[int, Flag("--layers")] = Field(
        2, ge=0, le=8, description="D3: LightGCN layers on the user-item graph"
    )
    knn_k: int = Field(
        10, ge=1, le=1000, description="D5: item-item kNN neighbours (incl. the item, as DRAGON)"
    )
    graph_weights: Annotated[
        dict[str, Annotated[float, Field(ge=0)]] | None, Flag(metavar="MOD=W,...")
    ] = Field(None, description="D5 item-graph mixing (default: image 0.1, the rest share 0.9)")
    per_channel_graph: bool = Field(
        False, description="propagate each channel over its own modality's kNN graph"
    )
    user_graph_k: int = Field(
        40, ge=1, le=1000, description="D6: co-occurrence neighbours per user"
    )
    # -- optimisation -----------------------------------------------------------------------
    # 2e-3 by issue 17: validation's pick at d 64 over both MMRec sets (margo+id [freedom, prune
    # 0.5], 3 seeds: mlsmall 0.3081 vs 0.3070 at 1e-3, amazon-scientific 0.2017 vs 0.1987)
    lr: float = Field(
        2e-3, gt=0, le=1, description="Adam lr, both stages (MMRec's 1e-3; the paper 1e-4)"
    )
    lr_stage2: float | None = Field(
        None, gt=0, le=1, description="stage-II Adam lr (default: lr)"
    )
    batch_size: int = Field(
        2048, ge=1, le=1_000_000, description="training pairs per step (each with n_negatives "
        "triplets)",
    )
    # more negatives per pair at the same step count: a step's cost is the graph propagation,
    # so the extra triplets are nearly free (issue 17; BPR is averaged over a pair's negatives)
    n_negatives: int = Field(
        1, ge=1, le=64, description="uniform negatives per training pair and epoch (BPR and "
        "every per-triplet loss averaged over them)",
    )
    epochs: int = Field(300, ge=1, le=1000, description="maximum epochs per stage (MMRec's 300)")
    patience: int = Field(
        20, ge=1, le=1000, description="validation checks without a better metric before stopping"
    )
    eval_every: int = Field(1, ge=1, le=100, description="epochs between validation checks")
    reg_weight: Annotated[float, Flag("--reg-weight", aliases=("--beta",))] = Field(
        1e-3, ge=0, description="beta (A4): L2 weight, beta * sum_m mean(P^m[u]^2)"
    )
    # -- MARGO (ALGORITHMS.md 1.3-1.6) -------------------------------------------------------
    alpha: float = Field(
        0.01, ge=0, description="weight of L_cal (Eq. 10; 0.01 chosen on validation, the "
        "paper's suggestion 0.1)",
    )
    tau_conf: float = Field(5.0, gt=0, description="confidence scale (Eq. 7)")
    two_stage: bool = Field(
        True, description="off: 'w/o two-stage', weights and L_cal from the first epoch"
    )
    stopgrad: bool = Field(
        True, description="off: 'w/o nograd', L_cal's gradient flows through z and gamma"
    )
    drop_invalid: Annotated[bool, Flag(off="--literal-g")] = Field(
        True, description="A1: drop all-negative triplets from L_cal (--literal-g: g(x) = -e^6)"
    )
    weight_init_std: float = Field(0.01, ge=0, description="A5: W ~ N(0, std^2)")
    scale_weights: Annotated[bool, Flag(off="--paper-scale")] = Field(
        True, description="A5 variant: fuse with M * softmax(W) (--paper-scale: softmax as printed)"
    )
    weight_lr: float | None = Field(
        1e-2, gt=0, le=10, description="Adam lr of the per-item logits W (chosen on validation; "
        "unset: the stage's lr)",
    )
    reliability_prior: float = Field(
        0.0, ge=0, le=10, description="reliability-guided fusion (issue 15): stage II starts W at "
        "this times log(reliability score) of trainer/reliability; 0 = off (faithful MARGO)",
    )
    reliability_repair: bool = Field(
        False, description="reliability-guided content (issue 15): blend the content of items "
        "scored below --repair-threshold towards its cross-modal prediction by 1 - score",
    )
    repair_threshold: float = Field(
        0.5, ge=0, le=1, description="--reliability-repair moves only content whose reliability "
        "score is below this (0.5: a swap more likely than not; 1: every item, by 1 - score)",
    )
    # -- training plug-ins (trainer/plugins; ALGORITHMS.md 2-4) ----------------------------------
    plugins: Annotated[tuple[str, ...], Flag("--plugin", metavar="PLUGIN")] = Field(
        (), description="training plug-ins: ckd and/or sea (repeatable: --plugin ckd --plugin sea)"
    )
    ckd_lambda_kd: float = Field(
        0.01, ge=0, description="CKD lambda_kd: total distillation weight (Eq. 19; code kd_ratio)"
    )
    ckd_lambda_g: float = Field(
        5.0, ge=0, description="CKD lambda_g: generic vs specific distillation (Eq. 14; code kl)"
    )
    ckd_tau: float = Field(0.1, gt=0, description="CKD tau_kd of the generic targets (Eq. 13)")
    ckd_generic: int = Field(5000, ge=0, description="CKD N_g random (u, j, k) triples per step")
    ckd_reweight: Literal["paper", "none", "code"] = Field(
        "paper", description="CKD counterfactual lambda_m (Eqs. 15-18) or none (code: refused)"
    )
    ckd_teacher: Literal["drop", "mean"] = Field(
        "drop", description="CKD teachers: drop the other modalities, or mean them (2.7)"
    )
    ckd_teacher_seed: Seed = Field(0, description="CKD teachers' seed (shared by student seeds)")
    ckd_stage2: bool = Field(False, description="CKD: also distil in stage II (an ablation)")
    ckd_stage2_scale: float = Field(0.1, ge=0, description="CKD lambda_kd multiplier in stage II")
    sea_alpha: float = Field(0.012, ge=0, description="SEA alpha_s: Solosim alignment weight")
    sea_beta: float = Field(
        0.006, ge=0, description="SEA beta_s: generic/unique distancing weight"
    )
    sea_tau: float = Field(0.2, gt=0, description="SEA tau_cl: alignment temperature")
    sea_distance: Literal["club", "neg-l2"] = Field(
        "club", description="SEA distance: vCLUB upper bound, or neg-l2 (cheap, Eq. 30)"
    )
    sea_align: Literal["solosim", "infonce"] = Field(
        "solosim", description="SEA alignment: one direction (solosim) or both (infonce)"
    )
    sea_club_steps: int = Field(
        5, ge=0, description="SEA: inner Adam steps of the CLUB estimator per batch (paper 50)"
    )
    sea_club_hidden: int = Field(16, ge=1, description="SEA: hidden width of q_theta")
    sea_scope: Literal["batch", "full"] = Field(
        "batch", description="SEA losses on the batch's items (cheap) or every item (SEA code)"
    )
    # -- run ----------------------------------------------------------------------------------
    seed: Seed = Field(999, description="seed of initialisation and sampling")
    device: str = Field("cpu", min_length=1, description="cpu or cuda[:N]")
    threads: int | None = Field(
        None, ge=1, description="torch intra-op CPU threads (default: the cores free at the start)"
    )
    eval_batch_users: int = Field(2048, ge=1, description="users per full-ranking block")
    topk: Annotated[tuple[Annotated[int, Field(ge=1)], ...], Flag(metavar="K,...")] = Field(
        (10, 20, 50), min_length=1, description="cut-offs of the ranking metrics"
    )
    select_metric: str = Field(
        "recall@20", description="validation metric for early stopping and the best state"
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise InvalidConfig(option_schema.problems(exc), flag_name) from None

    @field_validator("plugins")
    @classmethod
    def _known_plugins(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for n in names:
            if n not in PLUGINS:
                raise ValueError(f"unknown plug-in {n!r}; choose from {', '.join(PLUGINS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"each plug-in at most once, got {list(names)}")
        return names

    @field_validator("ckd_reweight")
    @classmethod
    def _reweight_that_works(cls, value: str) -> str:
        if value == "code":
            # C3: in a late-fusion model delta^m is the student's own channel gap, so the code's
            # per-sample coefficient (delta^m / Ds^m) is identically 1: no re-weighting happens
            raise ValueError(
                "'code': the reference code's per-sample weights are identically 1 in "
                "late-fusion models (every model here); use paper or none"
            )
        return value

    @model_validator(mode="after")
    def _combinations(self) -> TrainConfig:
        if self.plugins and self.model not in MULTIMODAL_MODELS:
            raise FieldProblem(
                "plugins",
                f"{self.plugins[0]} needs a multimodal model ({', '.join(MULTIMODAL_MODELS)}), "
                f"not {self.model}",
            )
        for name in ("two_stage", "stopgrad"):
            if self.model not in WEIGHTED_MODELS and not getattr(self, name):
                raise FieldProblem(
                    name, f"applies to {' and '.join(WEIGHTED_MODELS)} only, not {self.model}"
                )
        computed = {f"{m}@{k}" for m in ("recall", "ndcg") for k in self.topk}
        if self.select_metric not in computed:
            raise FieldProblem(
                "select_metric",
                f"{self.select_metric!r} is not a computed metric ({', '.join(sorted(computed))})",
            )
        return self

    def validate(self) -> TrainConfig:  # type: ignore[override]
        """Re-check every field and combination (after attribute assignments); returns self."""
        type(self)(**self.model_dump())
        return self

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields changed."""
        return type(self)(**{**self.model_dump(), **changes})

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """A JSON object of fields (a saved ``to_dict()`` or a hand-written subset), then
        ``overrides``; every problem names the file."""
        return cls(**{**read_config_file(path), **overrides})

    @property
    def weighted(self) -> bool:
        return self.model in WEIGHTED_MODELS

    @property
    def stage2_lr(self) -> float:
        return self.lr_stage2 if self.lr_stage2 is not None else self.lr

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists), in field order: what bundles save."""
        return self.model_dump(mode="json")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file's fields, unvalidated; unreadable JSON or unknown fields name the file."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of training options")
    unknown = sorted(set(values) - set(TrainConfig.model_fields))
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    return values


# Options that do not change stage I: the stage-I cache key (trainer/train.py) and CKD's
# teacher cache key (trainer/plugins/ckd.py) leave them out.
STAGE2_ONLY = {
    "model",
    "alpha",
    "tau_conf",
    "two_stage",
    "stopgrad",
    "drop_invalid",
    "weight_init_std",
    "weight_lr",
    "scale_weights",
    "reliability_prior",
    "lr_stage2",
    "device",
    "threads",
    "eval_batch_users",
    "ckd_stage2",
    "ckd_stage2_scale",
}

# The hyper-parameters a retrain request (POST /retrain) may set; the others keep the active
# model's values (or the defaults). service/schemas.py builds its TrainParams from this list.
RETRAIN_FIELDS = (
    "epochs", "patience", "eval_every", "lr", "lr_stage2", "weight_lr", "batch_size", "dim",
    "hidden", "n_layers", "knn_k", "user_graph_k", "per_channel_graph", "id_channel",
    "two_stage", "reg_weight", "alpha", "tau_conf", "seed", "modalities", "backbone",
    "prune_ratio", "feature_norm",
)  # fmt: skip


def flag_of(field: str) -> Flag:
    """The command-line spelling declared for a TrainConfig field (``Flag()``: ``--field-name``)."""
    return option_schema.flag_of(TrainConfig, field)


def flag_name(field: str) -> str:
    """The flag naming a TrainConfig field in messages, e.g. ``--layers``, ``--no-two-stage``."""
    return option_schema.flag_name(TrainConfig, field)


def subset_model(
    name: str, fields: Sequence[str], doc: str, module: str = __name__
) -> type[BaseModel]:
    """Some TrainConfig fields, same types, bounds and descriptions, each optional (the API)."""
    return option_schema.subset_model(TrainConfig, name, fields, doc, module)

