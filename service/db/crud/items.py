"""Items: the catalogue's rows, their serving filters (hidden, categories, title) and their
per-modality content vectors (``item_features``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from service.db import bulk
from service.db.crud.common import as_utc
from service.db.tables import Item, ItemFeature, utcnow


def upsert_items(
    session: Session, *, items: Sequence[dict[str, Any]], update_existing: bool = True
) -> None:
    """Insert or update ``{external_id, title, categories, metadata}`` rows (see bulk.py);
    ``update_existing=False`` only inserts the missing ones."""
    bulk.upsert_items(session, items, update_existing=update_existing)


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
    session: Session,
    *,
    since: dt.datetime | None = None,
    external_ids: Sequence[str] | None = None,
) -> Sequence[Row[tuple[str, bool, list[str], str | None]]]:
    """(external_id, hidden, categories, title) of every item, of those updated since
    ``since``, or of the given ones."""
    stmt = select(Item.external_id, Item.hidden, Item.categories, Item.title)
    if since is not None:
        stmt = stmt.where(Item.updated_at >= since)
    if external_ids is not None:
        stmt = stmt.where(Item.external_id.in_(list(external_ids)))
    return session.execute(stmt).all()


def items_watermark(session: Session) -> dt.datetime | None:
    return as_utc(session.scalar(select(func.max(Item.updated_at))))


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


# -- content vectors -------------------------------------------------------------------------
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
