"""Users: bulk upsert of external ids, search by prefix."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db import bulk
from service.db.tables import Interaction, User


def upsert_users(session: Session, *, external_ids: Iterable[str]) -> None:
    bulk.upsert_users(session, external_ids)


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
