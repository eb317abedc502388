"""Every SQL query of the service. Functions take a Session and keyword-only arguments.

Bulk upserts of a bundle's users and items live in ``bulk.py`` (driver-level, fast).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from service.db import bulk
from service.db.tables import (
    Interaction,
    Item,
    ItemFeature,
    Job,
    JobStatus,
    ModelStatus,
    ModelVersion,
    User,
    utcnow,
)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


# -- users and items -------------------------------------------------------------------------
def upsert_users(session: Session, *, external_ids: Iterable[str]) -> None:
    bulk.upsert_users(session, external_ids)


def upsert_items(session: Session, *, items: Sequence[dict[str, Any]]) -> None:
    """Insert or update ``{external_id, title, categories, metadata}`` rows (see bulk.py)."""
    bulk.upsert_items(session, items)


def get_item(session: Session, *, external_id: str) -> Item | None:
    return session.scalars(select(Item).where(Item.external_id == external_id)).first()


def update_item(
    session: Session,
    *,
    external_id: str,
    hidden: bool | None = None,
    categories: list[str] | None = None,
    title: str | None = None,
) -> Item | None:
    item = get_item(session, external_id=external_id)
    if item is None:
        return None
    if hidden is not None:
        item.hidden = hidden
    if categories is not None:
        item.categories = list(categories)
    if title is not None:
        item.title = title
    item.updated_at = utcnow()
    session.flush()
    return item


def item_filter_rows(
    session: Session, *, since: dt.datetime | None = None
) -> Sequence[Row[tuple[str, bool, list[str], str | None]]]:
    """(external_id, hidden, categories, title) of every item, or of those updated since
    ``since``."""
    stmt = select(Item.external_id, Item.hidden, Item.categories, Item.title)
    if since is not None:
        stmt = stmt.where(Item.updated_at >= since)
    return session.execute(stmt).all()


def items_watermark(session: Session) -> dt.datetime | None:
    return as_utc(session.scalar(select(func.max(Item.updated_at))))


# -- interactions ----------------------------------------------------------------------------
@dataclass
class IngestResult:
    written: int  # rows stored now
    duplicates: int  # records already stored (idempotent re-send) or repeated in the batch
    first_unknown: int | None = None  # index of the first record naming an unknown item
    unknown_item: str | None = None


def ingest_interactions(session: Session, *, rows: Sequence[dict[str, Any]]) -> IngestResult:
    """Store ``{user_id, item_id, timestamp?, weight?}`` records (external ids).

    All or nothing: a record naming an unknown item writes nothing (the caller's transaction
    is left untouched) and its index is returned. Unknown users are created. A record is
    identified by (user, item, timestamp); one without a timestamp by (user, item) alone, so
    re-sending the same batch writes nothing the second time.
    """
    item_ids = {str(r["item_id"]) for r in rows}
    known = dict(
        session.execute(
            select(Item.external_id, Item.id).where(Item.external_id.in_(item_ids))
        ).all()
    )
    for n, r in enumerate(rows):
        if str(r["item_id"]) not in known:
            return IngestResult(0, 0, first_unknown=n, unknown_item=str(r["item_id"]))
    user_ids = {str(r["user_id"]) for r in rows}
    upsert_users(session, external_ids=user_ids)
    users = dict(
        session.execute(
            select(User.external_id, User.id).where(User.external_id.in_(user_ids))
        ).all()
    )
    # what is stored already for these pairs: (user, item) -> set of timestamps
    stored: dict[tuple[int, int], set[int]] = {}
    for u, i, t in session.execute(
        select(Interaction.user_id, Interaction.item_id, Interaction.timestamp).where(
            Interaction.user_id.in_(set(users.values())),
            Interaction.item_id.in_(set(known.values())),
        )
    ):
        stored.setdefault((u, i), set()).add(int(t))
    now = utcnow()
    new: list[dict[str, Any]] = []
    for r in rows:
        pair = (users[str(r["user_id"])], known[str(r["item_id"])])
        seen = stored.setdefault(pair, set())
        ts = r.get("timestamp")
        if (ts is None and seen) or (ts is not None and int(ts) in seen):
            continue
        ts = int(now.timestamp()) if ts is None else int(ts)
        seen.add(ts)
        new.append(
            {
                "user_id": pair[0],
                "item_id": pair[1],
                "timestamp": ts,
                "weight": float(r.get("weight", 1.0) if r.get("weight") is not None else 1.0),
                "created_at": now,
            }
        )
    if new:
        session.execute(Interaction.__table__.insert(), new)
    return IngestResult(written=len(new), duplicates=len(rows) - len(new))


def add_interactions(session: Session, *, rows: Sequence[dict[str, Any]]) -> list[str]:
    """:func:`ingest_interactions`, returning the unknown item ids (empty when stored)."""
    result = ingest_interactions(session, rows=rows)
    if result.first_unknown is None:
        return []
    known = set(
        session.scalars(
            select(Item.external_id).where(Item.external_id.in_({str(r["item_id"]) for r in rows}))
        )
    )
    return sorted({str(r["item_id"]) for r in rows} - known)


def interactions_since(
    session: Session, *, since: dt.datetime
) -> Sequence[Row[tuple[str, str, dt.datetime]]]:
    """(user external id, item external id, created_at) ingested at or after ``since``."""
    stmt = (
        select(User.external_id, Item.external_id, Interaction.created_at)
        .join(User, User.id == Interaction.user_id)
        .join(Item, Item.id == Interaction.item_id)
        .where(Interaction.created_at >= since)
    )
    return session.execute(stmt).all()


# -- model versions --------------------------------------------------------------------------
def get_model(session: Session, *, version: str) -> ModelVersion | None:
    return session.get(ModelVersion, version)


def model_by_path(session: Session, *, bundle_path: str) -> ModelVersion | None:
    stmt = select(ModelVersion).where(ModelVersion.bundle_path == bundle_path)
    return session.scalars(stmt).first()


def list_models(session: Session, *, status: str | None = None) -> Sequence[ModelVersion]:
    stmt = select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.version)
    if status is not None:
        stmt = stmt.where(ModelVersion.status == status)
    return session.scalars(stmt).all()


def save_model(session: Session, *, version: str, **fields: Any) -> ModelVersion:
    """Create the model version or overwrite the given fields of an existing one."""
    row = session.get(ModelVersion, version)
    if row is None:
        row = ModelVersion(version=version, **fields)
        session.add(row)
    else:
        for key, value in fields.items():
            setattr(row, key, value)
    session.flush()
    return row


def active_version(session: Session) -> str | None:
    stmt = select(ModelVersion.version).where(ModelVersion.status == ModelStatus.ACTIVE.value)
    return session.scalars(stmt.order_by(ModelVersion.activated_at.desc())).first()


def newest_ready(session: Session) -> ModelVersion | None:
    stmt = (
        select(ModelVersion)
        .where(ModelVersion.status == ModelStatus.READY.value)
        .order_by(ModelVersion.created_at.desc(), ModelVersion.registered_at.desc())
    )
    return session.scalars(stmt).first()


def mark_active(session: Session, *, version: str) -> None:
    """Make ``version`` the one active model; the previous one becomes retired."""
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == ModelStatus.ACTIVE.value, ModelVersion.version != version)
        .values(status=ModelStatus.RETIRED.value)
    )
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.version == version)
        .values(status=ModelStatus.ACTIVE.value, activated_at=utcnow(), note=None)
    )


def mark_failed(session: Session, *, version: str, reason: str) -> None:
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.version == version)
        .values(status=ModelStatus.FAILED.value, note=reason[:2000])
    )


def item_titles(session: Session, *, external_ids: Sequence[str]) -> dict[str, str | None]:
    if not external_ids:
        return {}
    stmt = select(Item.external_id, Item.title).where(Item.external_id.in_(list(external_ids)))
    return dict(session.execute(stmt).all())


# -- items written through the API (POST /items) ---------------------------------------------
def upsert_item(
    session: Session,
    *,
    external_id: str,
    fields: dict[str, Any],
    features: dict[str, tuple[bytes, int, str | None]],
) -> tuple[Item, bool]:
    """Create or update one item; ``fields`` holds only the attributes the client sent.
    ``features``: modality -> (float32 bytes, dim, source text). Returns (item, created)."""
    item = get_item(session, external_id=external_id)
    created = item is None
    if item is None:
        item = Item(external_id=external_id, meta={}, categories=[], hidden=False)
        session.add(item)
    for key, value in fields.items():
        setattr(item, key, value)
    item.updated_at = utcnow()
    session.flush()
    for modality, (vector, dim, source_text) in features.items():
        row = session.get(ItemFeature, (item.id, modality))
        if row is None:
            row = ItemFeature(item_id=item.id, modality=modality)
            session.add(row)
        row.dim, row.vector, row.source_text = dim, vector, source_text
        row.updated_at = utcnow()
    session.flush()
    return item, created


def feature_dims(session: Session) -> dict[str, int]:
    """Vector size of each modality stored in ``item_features`` (pending texts left out)."""
    stmt = (
        select(ItemFeature.modality, func.max(ItemFeature.dim))
        .where(ItemFeature.dim > 0)
        .group_by(ItemFeature.modality)
    )
    return {m: int(d) for m, d in session.execute(stmt).all()}


def pending_texts(session: Session) -> Sequence[Row[tuple[int, str, str]]]:
    """(item id, modality, text) of text content not encoded yet (``dim`` 0)."""
    stmt = select(ItemFeature.item_id, ItemFeature.modality, ItemFeature.source_text).where(
        ItemFeature.dim == 0
    )
    return session.execute(stmt).all()


def store_vectors(session: Session, *, rows: Sequence[tuple[int, str, bytes, int]]) -> None:
    """Write encoded vectors: (item id, modality, float32 bytes, dim)."""
    for item_id, modality, vector, dim in rows:
        session.execute(
            update(ItemFeature)
            .where(ItemFeature.item_id == item_id, ItemFeature.modality == modality)
            .values(vector=vector, dim=dim, updated_at=utcnow())
        )


# -- jobs ------------------------------------------------------------------------------------
def create_job(
    session: Session, *, job_id: str, kind: str, params: dict[str, Any], note: str | None
) -> Job:
    job = Job(id=job_id, kind=kind, status=JobStatus.QUEUED.value, params=params, note=note)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, *, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(
    session: Session, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> Sequence[Job]:
    stmt = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return session.scalars(stmt).all()


OPEN_JOB_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def open_job(session: Session, *, kind: str) -> Job | None:
    """The queued or running job of ``kind``, if any (the oldest)."""
    stmt = (
        select(Job)
        .where(Job.kind == kind, Job.status.in_(OPEN_JOB_STATUSES))
        .order_by(Job.created_at)
    )
    return session.scalars(stmt).first()


def update_job(session: Session, *, job_id: str, **values: Any) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow(), **values))


def claim_job(session: Session, *, job_id: str) -> bool:
    """queued -> running; False when the job is not queued (cancelled, or taken already)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(status=JobStatus.RUNNING.value, started_at=now, heartbeat_at=now, updated_at=now)
    )
    return result.rowcount == 1


def finish_job(session: Session, *, job_id: str, status: JobStatus, **values: Any) -> bool:
    """Record a terminal status, unless the job has one already (first writer wins)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(OPEN_JOB_STATUSES))
        .values(status=status.value, finished_at=now, updated_at=now, **values)
    )
    return result.rowcount == 1


def cancel_queued(session: Session, *, job_id: str) -> bool:
    """queued -> cancelled; False when a worker has the job already."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(
            status=JobStatus.CANCELLED.value,
            finished_at=now,
            updated_at=now,
            error="cancelled before it started",
        )
    )
    return result.rowcount == 1


def fail_stale_jobs(session: Session, *, older_than: dt.datetime) -> list[str]:
    """Mark running jobs whose worker stopped beating before ``older_than`` failed."""
    stmt = select(Job.id).where(
        Job.status == JobStatus.RUNNING.value, Job.heartbeat_at < older_than
    )
    stale = list(session.scalars(stmt))
    for job_id in stale:
        finish_job(
            session,
            job_id=job_id,
            status=JobStatus.FAILED,
            error="the worker stopped responding (no heartbeat since "
            f"{older_than.isoformat(timespec='seconds')}); it was probably killed",
        )
    return stale


def mark_rejected(session: Session, *, version: str, reason: str) -> None:
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.version == version)
        .values(status=ModelStatus.REJECTED.value, note=reason[:2000])
    )


def find_users(session: Session, *, prefix: str, limit: int) -> list[tuple[str, int]]:
    """Users whose external id starts with ``prefix`` (in id order) and their interaction
    counts. LIKE wildcards in the prefix are matched literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    ids = (
        select(User.id, User.external_id)
        .where(User.external_id.like(f"{escaped}%", escape="\\"))
        .order_by(User.external_id)
        .limit(limit)
        .subquery()
    )
    counts = (
        select(ids.c.external_id, func.count(Interaction.id))
        .select_from(ids)
        .outerjoin(Interaction, Interaction.user_id == ids.c.id)
        .group_by(ids.c.external_id)
        .order_by(ids.c.external_id)
    )
    return [(external_id, int(n)) for external_id, n in session.execute(counts)]
