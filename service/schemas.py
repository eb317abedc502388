"""API schemas (pydantic), separate from the SQL tables in ``service/db/tables.py``.

The recommendation route builds its payload as plain dicts and encodes it with orjson (the hot
path skips pydantic validation); its schema here documents that payload in ``/docs``, and
``tests/service/api`` validates real responses against it.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.db.tables import JobStatus, ModelStatus
from service.fresh.schemas import FoldedItemInfo, FoldedUserInfo, ItemFoldInStatus
from service.limits import INT64_MAX, Float32, Int64, JsonObject, SafeId, SafeText, Vector
from trainer.config import RETRAIN_FIELDS, ModelName, subset_model


class ErrorOut(BaseModel):
    error: str = Field(description="machine-readable code, e.g. not_found, validation_error")
    detail: str = Field(description="what went wrong and, where it helps, what to do")


class Strategy(StrEnum):
    PERSONAL = "personal"  # the user's own query vector against the index
    POPULAR = "popular"  # unknown user without usable interactions: most popular items
    FOLD_IN = "fold-in"  # unknown user with interactions: a query folded in from them


class RecParams(BaseModel):
    """Query parameters of GET /users/{user_id}/recommendations."""

    model_config = ConfigDict(extra="ignore")

    k: int = Field(20, ge=1, le=1000, description="page size")
    offset: int = Field(0, ge=0, le=INT64_MAX, description="items to skip")
    exclude_seen: bool = Field(
        True, description="drop training interactions and those ingested since"
    )
    explain: bool = Field(True, description="per-modality terms for each item")
    category: list[SafeText] = Field(
        default_factory=list, description="keep items carrying every given label"
    )


class ModalityExplanation(BaseModel):
    score: float = Field(description="e_u^m . e_i^m, the modality's own score")
    weight: float = Field(description="w_i^m, the item's learned reliability of the modality")
    contribution: float = Field(description="w_i^m * score; contributions sum to the item score")
    share: float = Field(description="contribution / sum of |contributions|, signed")
    reliability: float | None = Field(
        None,
        description="the item's reliability score of the modality in [0, 1] (how far its "
        "content can be trusted); null when the model has none (see reliability_absent)",
    )
    reliability_confidence: float | None = Field(
        None, description="confidence of the reliability score in [0, 1]; null with it"
    )


class RecommendedItem(BaseModel):
    item_id: str
    title: str | None = Field(None, description="the item's title in the catalogue, if it has one")
    rank: int = Field(description="1-based position in the user's full ranking")
    score: float = Field(description="MARGO score (popularity count for the popular strategy)")
    modalities: dict[str, ModalityExplanation] | None = Field(
        None, description="per-modality terms; null with explain=false or strategy popular"
    )
    top_modality: str | None = Field(None, description="modality with the largest contribution")
    positives: int = Field(description="training positives of the item")
    low_confidence: bool = Field(
        description="fewer training positives than MARGO_LOW_CONFIDENCE_POSITIVES: the item's "
        "weights were learned from little data"
    )
    cold: bool = Field(False, description="a new item folded in from its content")
    fold_in: FoldedItemInfo | None = Field(None, description="where a cold item's vector is from")


class UserOut(BaseModel):
    user_id: str
    personal: bool = Field(
        description="the live model has a vector for this user (else: popular items until the "
        "next retrain)"
    )
    interactions: int = Field(description="interactions stored in SQL for this user")


class UsersOut(BaseModel):
    users: list[UserOut]


class RecommendationsOut(BaseModel):
    user_id: str
    model_version: str
    strategy: Strategy
    items: list[RecommendedItem]
    reliability_absent: str | None = Field(
        None, description="why the explanations carry no reliability score; null when they do"
    )
    fold_in: FoldedUserInfo | None = Field(
        None, description="set when the query was folded in from interactions since training"
    )


class ReliabilityScore(BaseModel):
    score: float = Field(description="reliability score of the item's modality, in [0, 1]")
    confidence: float = Field(description="confidence of the score, in [0, 1]")


class ItemModelInfo(BaseModel):
    model_version: str
    weights: dict[str, float] = Field(description="learned reliability weight per modality")
    positives: int
    popularity: int
    low_confidence: bool
    reliability: dict[str, ReliabilityScore] | None = Field(
        None, description="reliability score and confidence per modality; null when the model "
        "has none (see reliability_absent)"
    )
    reliability_absent: str | None = Field(
        None, description="why reliability is null; null when it is given"
    )


class ItemOut(BaseModel):
    item_id: str
    title: str | None
    categories: list[str]
    metadata: dict[str, Any]
    hidden: bool
    model: ItemModelInfo | None = Field(
        None, description="the active model's view of the item; null if it does not know it"
    )
    cold: bool = Field(False, description="the active model did not train on the item")
    fold_in: ItemFoldInStatus | None = Field(
        None, description="fold-in state of a cold item, or of a trained item updated since"
    )


def check_labels(value: list[str] | None) -> list[str] | None:
    """Category labels as a dataset bundle can store them (``|`` separates them there): a
    label it cannot write would fail every later retrain."""
    if value is not None and any("|" in c or not c for c in value):
        raise ValueError("category labels must be non-empty and must not contain '|'")
    return value


class ItemPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden: bool | None = None
    categories: list[SafeText] | None = None
    title: SafeText | None = None

    @field_validator("categories")
    @classmethod
    def _no_pipe(cls, value: list[str] | None) -> list[str] | None:
        return check_labels(value)


class SimilarItem(BaseModel):
    item_id: str
    rank: int
    score: float = Field(description="v_i . v_j in the fused (weighted) space")
    cold: bool = Field(False, description="a new item folded in from its content")


class SimilarOut(BaseModel):
    item_id: str
    model_version: str
    items: list[SimilarItem]


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


class ReliabilityValue(StrEnum):
    SCORE = "score"  # the trainer's reliability score per (item, modality), in [0, 1]
    WEIGHT = "weight"  # the model's learned fusion weight w_i^m


class ReliabilityItem(BaseModel):
    item_id: str
    title: str | None
    score: float | None = Field(
        description="reliability score of the requested modality; null when the model has none"
    )
    confidence: float | None = Field(description="confidence of that score; null with it")
    weight: float = Field(description="learned weight of the requested modality")
    weights: dict[str, float]
    reliability: dict[str, ReliabilityScore] | None = Field(
        description="score and confidence of every modality; null when the model has none"
    )
    positives: int
    low_confidence: bool


class ReliabilityOut(BaseModel):
    model_version: str
    modality: str
    order: Order
    by: ReliabilityValue = Field(description="what the items are ordered by")
    reliability_method: dict[str, Any] | None = Field(
        description="how the model's reliability score was computed (the bundle manifest's "
        "description: signals, combiner, calibration); null when it has none"
    )
    reliability_absent: str | None = Field(
        description="why the items carry no reliability score; null when they do"
    )
    items: list[ReliabilityItem]


class ModalityHistogram(BaseModel):
    modality: str
    counts: list[int] = Field(description="items per bin; bins are the response's ``edges``")
    mean: float
    quantiles: dict[str, float] = Field(description="p10, p25, p50, p75, p90 of the values")
    mean_confidence: float | None = Field(
        None, description="mean confidence of the reliability score (of=score only)"
    )


class ReliabilityHistogramOut(BaseModel):
    model_version: str
    of: ReliabilityValue = Field(
        ReliabilityValue.WEIGHT, description="the value counted: learned weight or score"
    )
    reliability_absent: str | None = Field(
        None, description="of=score on a model without a reliability score: why (then "
        "edges and modalities are empty)"
    )
    n_items: int = Field(description="items counted (those with at least min_positives)")
    min_positives: int
    edges: list[float] = Field(description="bins+1 edges shared by every modality")
    modalities: list[ModalityHistogram]


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: str
    status: ModelStatus
    created_at: dt.datetime
    registered_at: dt.datetime
    activated_at: dt.datetime | None
    bundle_path: str | None = Field(
        description="the bundle's directory on the server; shown to admin keys only (null for "
        "the others: server paths are not for every reader)"
    )
    model_kind: str | None
    n_users: int
    n_items: int
    dataset_fingerprint: str | None
    metrics: dict[str, Any]
    note: str | None
    live: bool = Field(False, description="served by this API process right now")

    @field_validator("created_at", "registered_at", "activated_at")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        """SQLite hands datetimes back without a zone; everything is stored in UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class ModelsOut(BaseModel):
    active: str | None
    live: str | None = Field(description="version this process serves")
    models: list[ModelOut]


class InteractionIn(BaseModel):
    user_id: SafeId = Field(min_length=1, max_length=255)
    item_id: SafeId = Field(min_length=1, max_length=255)
    timestamp: Int64 | None = Field(None, description="Unix seconds; default: now")
    weight: Float32 = Field(1.0, description="finite, within float32")


class InteractionsIn(BaseModel):
    interactions: list[InteractionIn] = Field(min_length=1, max_length=10_000)


class InteractionsOut(BaseModel):
    accepted: int


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    model_version: str
    cache: dict[str, Any]


# -- feedback and retraining (service/api/interactions.py, items.py, retrain.py, jobs.py) ------
class IngestOut(BaseModel):
    accepted: int = Field(description="records in the batch")
    written: int = Field(description="rows stored now")
    duplicates: int = Field(description="records stored before (or repeated in the batch)")


class ModalityContent(BaseModel):
    """One modality of an item: a vector, or raw text for a text modality (not both)."""

    model_config = ConfigDict(extra="forbid")

    vector: Vector | None = Field(
        None, description="the modality's feature vector (finite float32 values)"
    )
    text: SafeText | None = Field(
        None, min_length=1, description="raw text, encoded with all-MiniLM-L6-v2 at retraining"
    )


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: SafeId = Field(min_length=1, max_length=255)
    title: SafeText | None = None
    categories: list[SafeText] | None = None
    metadata: JsonObject | None = None
    hidden: bool | None = None
    content: dict[str, ModalityContent] = Field(
        default_factory=dict, description="modality name -> vector or text"
    )

    @field_validator("categories")
    @classmethod
    def _no_pipe(cls, value: list[str] | None) -> list[str] | None:
        return check_labels(value)


class ItemsIn(BaseModel):
    items: list[ItemIn] = Field(min_length=1, max_length=1000)


# POST /retrain's hyperparameters: the fields of trainer/config.py's RETRAIN_FIELDS, with
# TrainConfig's own types, bounds and descriptions (one schema), each optional: unset ones keep
# the active model's values (or the defaults). NaN and Infinity are refused, not replaced.
TrainParams = subset_model(
    "TrainParams",
    RETRAIN_FIELDS,
    "Hyper-parameters a retrain may set (the rest keep the active model's or the defaults).",
    module=__name__,
)


class RetrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName = Field("margo", description="model kind (trainer/config.py)")
    hyperparameters: TrainParams = Field(default_factory=TrainParams)  # type: ignore[valid-type]
    note: SafeText | None = Field(None, max_length=2000)


class RetrainOut(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    job_id: str = Field(validation_alias="id")
    kind: str
    status: JobStatus
    stage: str | None
    epoch: int | None
    progress: float = Field(description="rough fraction done, 0..1")
    metrics: dict[str, Any] = Field(description="latest validation metrics and gate numbers")
    error: str | None
    params: dict[str, Any]
    note: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    cancel_requested: bool = False
    result_version: str | None

    @field_validator("created_at", "started_at", "finished_at", "heartbeat_at")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class JobsOut(BaseModel):
    jobs: list[JobOut]
