"""Every SQL query of the service. Functions take a Session and keyword-only arguments.

Bulk upserts of a bundle's users and items live in ``bulk.py`` (driver-level, fast).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from service.db import bulk
from service.db.tables import Interaction, Item, ModelStatus, ModelVersion, User, utcnow


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
) -> Sequence[Row[tuple[str, bool, list[str]]]]:
    """(external_id, hidden, categories) of every item, or of those updated since ``since``."""
    stmt = select(Item.external_id, Item.hidden, Item.categories)
    if since is not None:
        stmt = stmt.where(Item.updated_at >= since)
    return session.execute(stmt).all()


def items_watermark(session: Session) -> dt.datetime | None:
    return as_utc(session.scalar(select(func.max(Item.updated_at))))


# -- interactions ----------------------------------------------------------------------------
def add_interactions(session: Session, *, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Store ``{user_id, item_id, timestamp, weight}`` rows (external ids; unknown users are
    created). Returns the external ids of unknown items, in which case nothing is written."""
    item_ids = {str(r["item_id"]) for r in rows}
    known = dict(
        session.execute(
            select(Item.external_id, Item.id).where(Item.external_id.in_(item_ids))
        ).all()
    )
    missing = sorted(item_ids - known.keys())
    if missing:
        return missing
    user_ids = {str(r["user_id"]) for r in rows}
    upsert_users(session, external_ids=user_ids)
    users = dict(
        session.execute(
            select(User.external_id, User.id).where(User.external_id.in_(user_ids))
        ).all()
    )
    now = utcnow()
    session.execute(
        Interaction.__table__.insert(),
        [
            {
                "user_id": users[str(r["user_id"])],
                "item_id": known[str(r["item_id"])],
                "timestamp": int(r.get("timestamp") or now.timestamp()),
                "weight": float(r.get("weight", 1.0)),
                "created_at": now,
            }
            for r in rows
        ],
    )
    return []


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
