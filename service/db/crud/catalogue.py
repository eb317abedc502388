"""The catalogue row: which dataset's users and items this database holds (one per database)."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.db.tables import (
    Catalogue,
    Interaction,
    Item,
    ItemFeature,
    ModelStatus,
    ModelVersion,
    User,
    utcnow,
)


def get_catalogue(session: Session) -> Catalogue | None:
    return session.get(Catalogue, 1)


def claim_catalogue(session: Session, *, dataset: str | None, version: str) -> Catalogue:
    """Name the catalogue after ``dataset`` unless it is named already; returns the row.

    Two processes registering their first model at once both insert row 1: the loser's
    commit fails on the primary key and its registration is retried by the caller's session.
    """
    row = get_catalogue(session)
    if row is None:
        row = Catalogue(id=1, dataset=dataset, set_by=version, set_at=utcnow())
        session.add(row)
        session.flush()
    return row


def replace_catalogue(session: Session, *, dataset: str | None, version: str) -> int:
    """Drop every user, item, interaction and content vector, retire every model version of
    the old catalogue for good (they name ids that no longer exist), and name the new one.

    Returns how many model versions were marked failed. API keys and jobs are kept.
    """
    old = get_catalogue(session)
    note = f"catalogue replaced by dataset {dataset!r} (model {version})"
    if old is not None:
        note = f"{note}; was {old.dataset!r}"
    session.execute(delete(Interaction))
    session.execute(delete(ItemFeature))
    session.execute(delete(Item))
    session.execute(delete(User))
    result = session.execute(
        update(ModelVersion)
        .where(ModelVersion.version != version)
        .values(status=ModelStatus.FAILED.value, note=note)
    )
    if old is None:
        session.add(Catalogue(id=1, dataset=dataset, set_by=version, set_at=utcnow()))
    else:
        old.dataset, old.set_by, old.set_at = dataset, version, utcnow()
    session.flush()
    return result.rowcount or 0


def catalogue_dataset(session: Session) -> str | None:
    """The catalogue's dataset name (None when unnamed or not claimed yet)."""
    return session.scalar(select(Catalogue.dataset).where(Catalogue.id == 1))
