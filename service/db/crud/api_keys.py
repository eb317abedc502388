"""API keys: rows by public prefix; the hashing and role rules live in service/auth.py."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db.tables import ApiKey


def add_api_key(
    session: Session, *, prefix: str, key_hash: str, role: str, name: str | None
) -> ApiKey:
    row = ApiKey(prefix=prefix, key_hash=key_hash, role=role, name=name)
    session.add(row)
    session.flush()
    return row


def api_key_by_prefix(session: Session, *, prefix: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def touch_api_key(session: Session, *, key_id: int, at: dt.datetime) -> None:
    """Record the key's last use."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at))
