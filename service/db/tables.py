"""SQLAlchemy tables. The schema itself is owned by Alembic (``migrations/``); keep the two in
step (``tests/service/db/test_migrate.py`` compares them).

API schemas live in ``service/schemas.py``; nothing here is returned to clients directly.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ModelStatus(StrEnum):
    """Life cycle of a registered model version."""

    READY = "ready"  # registered and loadable, not serving
    ACTIVE = "active"  # the one version every API process serves
    RETIRED = "retired"  # served before; can be activated again (rollback)
    REJECTED = "rejected"  # a retraining run that failed its quality gate
    FAILED = "failed"  # bundle or index could not be loaded; see ``note``


class JobStatus(StrEnum):
    """Life cycle of a background job (retraining)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (Index("ix_items_updated_at", "updated_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    title: Mapped[str | None] = mapped_column(Text)
    # "metadata" is reserved on declarative classes, so the attribute is ``meta``.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Interaction(Base):
    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_user_id", "user_id"),
        Index("ix_interactions_created_at", "created_at"),
        Index("uq_interactions_record", "user_id", "item_id", "timestamp", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    """When the interaction happened, Unix seconds (the ``.inter`` file's timestamp)."""
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    """When the service ingested it."""
    split: Mapped[int | None] = mapped_column(SmallInteger)
    """0/1/2 = train/valid/test in the dataset the row was seeded from; NULL if ingested."""


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (Index("ix_model_versions_status", "status"),)

    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default=ModelStatus.READY.value)
    bundle_path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(128))
    n_users: Mapped[int] = mapped_column(Integer, default=0)
    n_items: Mapped[int] = mapped_column(Integer, default=0)
    model_kind: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)


class Catalogue(Base):
    """The one dataset whose users and items this database holds (a single row, id 1).

    ``dataset`` is the dataset name of the model bundles (``manifest.dataset.name``; None
    for bundles that carry none); a retrain's snapshot takes this name, so its model matches.
    """

    __tablename__ = "catalogue"
    __table_args__ = (CheckConstraint("id = 1", name="ck_catalogue_single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    dataset: Mapped[str | None] = mapped_column(String(255))
    set_by: Mapped[str] = mapped_column(String(128))
    """The model version whose registration named the catalogue."""
    set_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    stage: Mapped[str | None] = mapped_column(String(64))
    epoch: Mapped[int | None] = mapped_column(Integer)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    result_version: Mapped[str | None] = mapped_column(
        ForeignKey("model_versions.version", ondelete="SET NULL")
    )
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """Last sign of life of the worker running the job (see service/jobs/lifecycle.py)."""
    cancel_requested_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many times a worker has claimed the job (a dead worker's job is queued again)."""


class ItemFeature(Base):
    """One item's content for one modality: the vector the trainer reads (float32, C order)
    and, for text modalities, the text it was encoded from."""

    __tablename__ = "item_features"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    modality: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    source_text: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class ApiRole(StrEnum):
    """Roles are ordered: each one may do what the ones before it may."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class ApiKey(Base):
    """A hashed API key. The plain key is shown once at creation and never stored; ``prefix``
    (public, unique) finds the row, the hash of the whole key is compared in constant time."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class FoldedItem(Base):
    """An item the serving model did not train on, folded in from its content
    (service/fresh/): its per-modality embeddings e_i^m and weights w_i^m under one model
    version (v_i = concat_m w_i^m e_i^m is rebuilt from them), and where they came from.
    A retrain's model learns the item; activating it drops the rows of other versions."""

    __tablename__ = "folded_items"
    __table_args__ = (Index("ix_folded_items_updated_at", "updated_at"),)

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="ready")
    """``ready`` (served) or ``failed`` (``error`` says why; the item waits for a retrain)."""
    emb: Mapped[bytes | None] = mapped_column(LargeBinary)
    """float32 [M*d], C order: e_i^m of each channel in the model's channel order."""
    weights: Mapped[bytes | None] = mapped_column(LargeBinary)
    """float32 [M]: w_i^m."""
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class FoldedUser(Base):
    """A user's query folded in from the interactions posted since the model was trained
    (service/fresh/), under one model version; recomputed when the user posts more."""

    __tablename__ = "folded_users"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    emb: Mapped[bytes] = mapped_column(LargeBinary)
    """float32 [M*d]: e_u^m of each channel (q_u = concat_m e_u^m)."""
    items: Mapped[int] = mapped_column(Integer, default=0)
    """Interacted items the fold used."""
    last_interaction: Mapped[int] = mapped_column(BigInteger, default=0)
    """The newest ``interactions.id`` of the user it saw: an older row is stale."""
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
