"""Interactions: idempotent ingestion through the API, and what was ingested since a time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db.crud.users import upsert_users
from service.db.tables import Interaction, Item, User, utcnow


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

    Concurrent batches with the same records never fail: the insert skips rows another
    transaction stored meanwhile (``ON CONFLICT DO NOTHING`` on the record's unique index) and
    counts them as duplicates; rows go in sorted, so two batches lock index entries in the
    same order and cannot deadlock each other.
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
    # sorted: concurrent batches with overlapping new users take their index locks in one order
    user_ids = sorted({str(r["user_id"]) for r in rows})
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
    written = insert_new(session, new) if new else 0
    return IngestResult(written=written, duplicates=len(rows) - written)


RECORD_KEY = ("user_id", "item_id", "timestamp")
"""The columns of the unique index ``uq_interactions_record``."""


def insert_new(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert rows, skipping those already stored (also by a concurrent transaction);
    returns how many were written."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(Interaction.__table__)
        .on_conflict_do_nothing(index_elements=list(RECORD_KEY))
        .returning(Interaction.__table__.c.id)
    )
    rows = sorted(rows, key=lambda r: (r["user_id"], r["item_id"], r["timestamp"]))
    return len(session.execute(stmt, rows).all())


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
