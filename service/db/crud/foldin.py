"""Fold-in rows (service/fresh/): folded items and users per model version, and the item
content and user interactions a fold reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db.tables import FoldedItem, FoldedUser, Interaction, Item, ItemFeature, User, utcnow


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# -- items -------------------------------------------------------------------------------------
def item_ids_by_external(session: Session, *, external_ids: Sequence[str]) -> dict[str, int]:
    if not external_ids:
        return {}
    stmt = select(Item.external_id, Item.id).where(Item.external_id.in_(list(external_ids)))
    return {e: int(i) for e, i in session.execute(stmt).all()}


def item_features_of(
    session: Session, *, item_ids: Sequence[int]
) -> dict[int, dict[str, tuple[bytes, int]]]:
    """item id -> modality -> (float32 bytes, dim) of the encoded content (pending texts,
    ``dim`` 0, left out)."""
    out: dict[int, dict[str, tuple[bytes, int]]] = {}
    if not item_ids:
        return out
    stmt = select(ItemFeature.item_id, ItemFeature.modality, ItemFeature.vector, ItemFeature.dim)
    stmt = stmt.where(ItemFeature.item_id.in_(list(item_ids)), ItemFeature.dim > 0)
    for item_id, modality, vector, dim in session.execute(stmt):
        out.setdefault(int(item_id), {})[modality] = (bytes(vector), int(dim))
    return out


def pending_text_items(session: Session, *, item_ids: Sequence[int] | None = None) -> set[int]:
    """Items with text content not encoded yet (their fold waits for the encode job)."""
    stmt = select(ItemFeature.item_id).where(ItemFeature.dim == 0).distinct()
    if item_ids is not None:
        stmt = stmt.where(ItemFeature.item_id.in_(list(item_ids)))
    return {int(i) for i in session.scalars(stmt)}


def items_with_features(session: Session, *, limit: int) -> list[tuple[int, str]]:
    """(item id, external id) of the ``limit`` most recently updated items that have encoded
    content: the candidates a model loaded for serving folds in when it does not know them."""
    has = select(ItemFeature.item_id).where(ItemFeature.dim > 0).distinct().subquery()
    stmt = (
        select(Item.id, Item.external_id)
        .join(has, has.c.item_id == Item.id)
        .order_by(Item.updated_at.desc(), Item.id.desc())
        .limit(limit)
    )
    return [(int(i), str(e)) for i, e in session.execute(stmt).all()]


def save_folded_items(session: Session, *, version: str, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert ``{item_id, status, emb, weights, provenance, error}`` rows of one version."""
    if not rows:
        return
    now = utcnow()
    values = [{**r, "model_version": version, "updated_at": now} for r in rows]
    stmt = _insert(session)(FoldedItem.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=["item_id", "model_version"],
        set_={
            c: getattr(stmt.excluded, c)
            for c in ("status", "emb", "weights", "provenance", "error", "updated_at")
        },
    )
    session.execute(stmt, sorted(values, key=lambda r: r["item_id"]))


def folded_items(
    session: Session,
    *,
    version: str,
    since: dt.datetime | None = None,
    external_ids: Sequence[str] | None = None,
) -> Sequence[Row[Any]]:
    """(external id, status, emb, weights, provenance, error, updated_at) of a version's rows,
    oldest change first (all, changed since ``since``, or of the given items)."""
    stmt = (
        select(
            Item.external_id,
            FoldedItem.status,
            FoldedItem.emb,
            FoldedItem.weights,
            FoldedItem.provenance,
            FoldedItem.error,
            FoldedItem.updated_at,
        )
        .join(Item, Item.id == FoldedItem.item_id)
        .where(FoldedItem.model_version == version)
        .order_by(FoldedItem.updated_at, FoldedItem.item_id)
    )
    if since is not None:
        stmt = stmt.where(FoldedItem.updated_at >= since)
    if external_ids is not None:
        stmt = stmt.where(Item.external_id.in_(list(external_ids)))
    return session.execute(stmt).all()


def interactions_with(
    session: Session, *, external_ids: Sequence[str], since: dt.datetime
) -> list[tuple[str, str]]:
    """(user external id, item external id) of interactions with the given items ingested at
    or after ``since``: those posted before the items were folded in."""
    if not external_ids:
        return []
    stmt = (
        select(User.external_id, Item.external_id)
        .select_from(Interaction)
        .join(User, User.id == Interaction.user_id)
        .join(Item, Item.id == Interaction.item_id)
        .where(Item.external_id.in_(list(external_ids)), Interaction.created_at >= since)
    )
    return [(str(u), str(i)) for u, i in session.execute(stmt).all()]


def folded_watermark(session: Session, *, version: str) -> dt.datetime | None:
    stmt = select(func.max(FoldedItem.updated_at)).where(FoldedItem.model_version == version)
    return session.scalar(stmt)


def drop_other_versions(session: Session, *, keep: str) -> tuple[int, int]:
    """Delete the folded rows of every version but ``keep`` (the one just activated): its own
    bundle learned the items it trained on, and folds the rest itself. Returns (items,
    users) deleted."""
    items = session.execute(delete(FoldedItem).where(FoldedItem.model_version != keep))
    users = session.execute(delete(FoldedUser).where(FoldedUser.model_version != keep))
    return int(items.rowcount or 0), int(users.rowcount or 0)


def touch_items(session: Session, *, item_ids: Sequence[int]) -> None:
    """Bump ``updated_at`` so every process's catalogue poller re-reads the items."""
    if item_ids:
        session.execute(
            update(Item).where(Item.id.in_(list(item_ids))).values(updated_at=utcnow())
        )


# -- users -------------------------------------------------------------------------------------
def user_history(
    session: Session, *, external_id: str, limit: int
) -> tuple[int | None, list[str], int]:
    """(user id, item external ids of the ``limit`` newest interactions, newest first, each
    once; newest interaction id). (None, [], 0) for a user SQL does not know. One user at a
    time: the service reads a batch with ``user_histories``; this is its readable reference."""
    user_id = session.scalar(select(User.id).where(User.external_id == external_id))
    if user_id is None:
        return None, [], 0
    stmt = (
        select(Interaction.id, Item.external_id)
        .join(Item, Item.id == Interaction.item_id)
        .where(Interaction.user_id == user_id)
        .order_by(Interaction.id.desc())
        .limit(limit)
    )
    rows = session.execute(stmt).all()
    newest = int(rows[0][0]) if rows else 0
    return int(user_id), list(dict.fromkeys(str(i) for _, i in rows)), newest


IN_CHUNK = 500
"""External ids per IN list (SQLite's bound-parameter limit is 32,766; PostgreSQL's 65,535)."""


def user_histories(
    session: Session, *, external_ids: Sequence[str], limit: int
) -> dict[str, tuple[int, list[str], int]]:
    """``user_history`` of many users in one query per IN_CHUNK users (a window over each
    user's interactions keeps their ``limit`` newest): external id -> (user id, item external
    ids newest first, each once, newest interaction id). Users SQL does not know, or with no
    interactions, are left out."""
    out: dict[str, tuple[int, list[str], int]] = {}
    ids = list(dict.fromkeys(external_ids))
    for start in range(0, len(ids), IN_CHUNK):
        rank = func.row_number().over(
            partition_by=Interaction.user_id, order_by=Interaction.id.desc()
        )
        ranked = (
            select(
                User.external_id.label("user"),
                Interaction.user_id,
                Interaction.id,
                Interaction.item_id,
                rank.label("rank"),
            )
            .join(User, User.id == Interaction.user_id)
            .where(User.external_id.in_(ids[start : start + IN_CHUNK]))
            .subquery()
        )
        stmt = (
            select(ranked.c.user, ranked.c.user_id, ranked.c.id, Item.external_id)
            .join(Item, Item.id == ranked.c.item_id)
            .where(ranked.c.rank <= limit)
            .order_by(ranked.c.user_id, ranked.c.id.desc())
        )
        items: dict[str, list[str]] = {}
        for user, user_id, interaction, item in session.execute(stmt):
            if user not in out:  # its newest row comes first
                out[user] = (int(user_id), [], int(interaction))
                items[user] = []
            items[user].append(str(item))
        for user, seen in items.items():
            out[user][1].extend(dict.fromkeys(seen))
    return out


def save_folded_users(session: Session, *, version: str, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert ``{user_id, emb, items, last_interaction}`` rows of one version in one
    executemany (one statement, compiled once; sorted by user: concurrent writers take the
    row locks in one order); a row never replaces one folded from a newer interaction."""
    if not rows:
        return
    now = utcnow()
    values = sorted(
        ({**r, "model_version": version, "updated_at": now} for r in rows),
        key=lambda r: r["user_id"],
    )
    table = FoldedUser.__table__
    stmt = _insert(session)(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id", "model_version"],
        set_={  # excluded["items"]: .items is the collection's method
            c: stmt.excluded[c] for c in ("emb", "items", "last_interaction", "updated_at")
        },
        where=table.c.last_interaction <= stmt.excluded["last_interaction"],
    )
    session.execute(stmt, values)


def folded_user_now(
    session: Session, *, external_id: str, version: str
) -> tuple[int, bytes | None, int, int, int] | None:
    """A user's folded row and newest interaction in one query: (user id, emb bytes or None
    when the user has no row for ``version``, items, last_interaction, newest interaction id
    now); None for a user SQL does not know."""
    newest = (
        select(func.max(Interaction.id))
        .where(Interaction.user_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )
    stmt = (
        select(User.id, FoldedUser.emb, FoldedUser.items, FoldedUser.last_interaction, newest)
        .outerjoin(
            FoldedUser,
            (FoldedUser.user_id == User.id) & (FoldedUser.model_version == version),
        )
        .where(User.external_id == external_id)
    )
    row = session.execute(stmt).first()
    if row is None:
        return None
    user_id, emb, items, last, now = row
    if emb is None:
        return int(user_id), None, 0, 0, int(now or 0)
    return int(user_id), bytes(emb), int(items), int(last), int(now or 0)
