"""Model versions: the registry's rows and their status changes (ready, active, retired,
failed, rejected)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db.tables import ModelStatus, ModelVersion, utcnow


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


def active_model(session: Session) -> ModelVersion | None:
    """The active version's row, if one is active."""
    version = active_version(session)
    return get_model(session, version=version) if version else None


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


def mark_rejected(session: Session, *, version: str, reason: str) -> None:
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.version == version)
        .values(status=ModelStatus.REJECTED.value, note=reason[:2000])
    )
