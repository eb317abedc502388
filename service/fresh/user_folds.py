"""A user's fold from their SQL history, stored as the model version's row and cached
(trainer/foldin/users.py does the math, service/fresh/fold.py calls it). Who folds when:
user_sync.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from service.db.crud import foldin as fsql
from service.db.session import Database
from service.fresh import fold
from service.fresh.users import FoldedUser

if TYPE_CHECKING:
    from service.live import LiveModel

HISTORY_LIMIT = 1000
"""A user's fold reads at most this many of their newest interactions."""


def fold_and_store_users(
    model: LiveModel, db: Database, user_ids: list[str]
) -> dict[str, FoldedUser]:
    """``fold_and_save`` in a transaction of its own; caches the folded users (not those who
    wrote again meanwhile: their fold may predate it)."""
    since = model.users.mark()
    with db.session() as session:
        folded = fold_and_save(session, model, user_ids)
    for user_id, entry in folded.items():
        model.users.put(user_id, entry, since=since)
    return folded


def fold_and_save(session: Session, model: LiveModel, user_ids: list[str]) -> dict[str, FoldedUser]:
    """Fold users from their SQL histories and store their rows: one query for all their
    histories, one stacked solve (trainer/foldin/users.py fold_in_many), one upsert (a
    history query, a solve and an upsert per user, in two transactions per batch, cost ~4 ms
    a user on PostgreSQL, most of it round trips: bench.faults' writer of 100 users per batch
    took ~0.4 s of a serving process per batch)."""
    histories = fsql.user_histories(session, external_ids=user_ids, limit=HISTORY_LIMIT)
    folded = fold.fold_users(model, {u: (h, newest) for u, (_, h, newest) in histories.items()})
    fsql.save_folded_users(
        session,
        version=model.version,
        rows=[
            {
                "user_id": histories[u][0],
                "emb": entry.emb.tobytes(),
                "items": entry.items,
                "last_interaction": entry.last_interaction,
            }
            for u, entry in folded.items()
        ],
    )
    return folded


def prior_of(model: LiveModel, user_id: str) -> str:
    return "trained" if model.bundle.user_index(user_id) is not None else fold.NEW_USER_PRIOR
