"""Folded items between SQL and a loaded model: folding new items, storing them, and
applying what other processes stored.

Items: the process that takes ``POST /items`` folds the items it can (every content modality
encoded) in the request's transaction, so the item and its folded vector commit together;
text content is folded by the encode job (service/jobs/encode.py) once encoded. Every process
applies new ``folded_items`` rows of its model version on the registry's refresh (Redis event
or poll), and a model loaded for serving folds the newest unknown items that have content
but no row for it yet (after a retrain: those added while it trained).

Interactions with folded items: an item's fold takes the users who interacted with it as
well (trainer/foldin/interactions.py: the model's propagation from their trained vectors, for
bundles that export ``foldin_user_out``): when it is folded, and again after each write by one
of its users (``refold_posted_items``, in the writing process before those users fold: their
folds then see the item's new vector); every process applies the stored row as any other.

Interactions with catalogue items: a trained item's vector takes the users who interacted
with it since training as well (trainer/foldin/interactions.py ``updated_catalogue``, the users
held fixed; known users by row, others by their folded query), recomputed after each write
for the items its users interacted with since training (``update_catalogue_items``, in the
writing process after those users fold: newcomers count by their new query); stored as a
``folded_items`` row of the version for the trained item, so every process applies it as any
other folded row (service/fresh/items.py ``UpdatedItems``). A new version starts with none.

Users: user_sync.py (a read folds on a miss, a write queues the fold) and user_folds.py (a
user's fold from SQL, stored).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.orm import Session

from service.db import crud
from service.db.crud import foldin as fsql
from service.db.session import Database
from service.fresh import fold
from service.fresh.items import FoldedRow, UpdatedRow
from service.fresh.user_folds import HISTORY_LIMIT, fold_and_store_users
from trainer.bundle import ModelBundle
from trainer.foldin import ItemUsers, has_user_out
from trainer.foldin.interactions import posted_users, updated_catalogue

if TYPE_CHECKING:
    from service.live import LiveModel

log = logging.getLogger(__name__)

REFRESH_OVERLAP = dt.timedelta(seconds=5)
ITEM_USERS_LIMIT = 1000
"""A folded item's fold takes at most this many of its users (by SQL user id, the oldest)."""
REFOLD_ITEMS_LIMIT = 256
"""Folded items a write folds again at most (by slot, the latest slots first)."""
UPDATE_ITEMS_LIMIT = 256
"""Catalogue items a write recomputes at most (its users in order, each one's newest first)."""
UPDATE_PROVENANCE = "interactions"
"""``provenance["update"]`` of a stored catalogue item's recomputed row."""
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
QueryOf = Callable[[Session, str], np.ndarray | None]


def fold_and_store(
    session: Session,
    bundle: ModelBundle,
    version: str,
    external_ids: list[str],
    query_of: QueryOf | None = None,
) -> dict[str, str]:
    """Fold the given items (those ``bundle`` does not know) from their stored content and
    the interactions posted for them (``item_users``) into model ``version``, in the caller's
    transaction; returns {item id: why it waits} for those not folded now. FoldRefused when
    the math refuses one (the caller answers 422 and rolls back)."""
    folder = fold.item_folder(bundle)
    unknown = [i for i in external_ids if bundle.item_index(i) is None]
    if folder is None or not unknown:
        return {}
    db_ids = fsql.item_ids_by_external(session, external_ids=unknown)
    by_db = {v: k for k, v in db_ids.items()}
    content = {
        by_db[i]: stored
        for i, stored in fsql.item_features_of(session, item_ids=list(by_db)).items()
    }
    pending = {by_db[i] for i in fsql.pending_text_items(session, item_ids=list(by_db))}
    waiting = {i: "no content vectors yet" for i in unknown if i not in content}
    planned = fold.plan(folder, content, pending)
    waiting.update(planned.waiting)
    users = item_users(session, bundle, list(planned.ready), query_of)
    rows = fold.fold_items(folder, planned.ready, users)
    fsql.save_folded_items(
        session,
        version=version,
        rows=[fold.stored_row(r, db_ids[r.item_id]) for r in rows],
    )
    return waiting


def item_users(
    session: Session, bundle: ModelBundle, external_ids: list[str], query_of: QueryOf | None
) -> dict[str, ItemUsers]:
    """The users who interacted with each item (all SQL has: the model never trained on
    these items), at most ITEM_USERS_LIMIT each: users the model knows by their row, others
    by their folded query (``query_of``; left out without one). Empty when the bundle cannot
    fold items from interactions."""
    if not external_ids or not has_user_out(bundle):
        return {}
    by_item: dict[str, set[str]] = {}
    for user_id, item_id in fsql.interactions_with(session, external_ids=external_ids,
                                                   since=EPOCH):
        by_item.setdefault(item_id, set()).add(user_id)
    out: dict[str, ItemUsers] = {}
    for item_id, users in by_item.items():
        rows: list[int] = []
        vectors: list[np.ndarray] = []
        for user_id in sorted(users)[:ITEM_USERS_LIMIT]:
            row = bundle.user_index(user_id)
            if row is not None:
                rows.append(row)
            elif query_of is not None and (q := query_of(session, user_id)) is not None:
                vectors.append(q)
        out[item_id] = ItemUsers(np.asarray(rows, np.int64),
                                 user_vectors=np.stack(vectors) if vectors else None)
    return out


def folded_query(model: LiveModel) -> QueryOf:
    """A user's folded query in ``model``: this process's cache, else their stored row of
    the model's version (None without one)."""
    shape = (len(model.channels) * model.bundle.dim,)

    def query(session: Session, user_id: str) -> np.ndarray | None:
        hit = model.users.get(user_id)
        if hit is not None:
            return hit.query
        now = fsql.folded_user_now(session, external_id=user_id, version=model.version)
        if now is None or now[1] is None:
            return None
        return np.frombuffer(now[1], dtype=np.float32).reshape(shape)

    return query


def refold_posted_items(model: LiveModel, db: Database, user_ids: list[str]) -> int:
    """Fold again the folded items the users interacted with (their new interactions among
    them), store the rows and apply them here; returns how many were folded. All of those
    items, not only the ones of this write (the write hands over its users): a user's
    earlier folded items are folded again too, from the same users unless others came."""
    if not has_user_out(model.bundle) or fold.item_folder(model.bundle) is None:
        return 0
    rows: set[int] = set()
    for user_id in user_ids:
        held = model.overlay.rows(user_id)
        if held is not None:
            rows.update(int(r) for r in held[held >= model.n_items])
    items = [i for i in (model.folded.item_id(r) for r in sorted(rows, reverse=True)) if i]
    if not items:
        return 0
    items = items[:REFOLD_ITEMS_LIMIT]
    try:
        with db.session() as session:
            waiting = fold_and_store(session, model.bundle, model.version, items,
                                     query_of=folded_query(model))
    except fold.FoldRefused as exc:  # content it was folded from before: not expected
        log.warning("model %s: not folding items again: %s", model.version, exc)
        return 0
    refresh_items(model, db)
    return len(items) - len(waiting)


def update_catalogue_items(model: LiveModel, db: Database, user_ids: list[str]) -> int:
    """Recompute the catalogue items the users interacted with since training (at most
    UPDATE_ITEMS_LIMIT: the users in order, each one's newest first; not the items they
    trained on) from all their users since training (``catalogue_users``), store the rows
    and apply them here; returns how many were stored."""
    bundle = model.bundle
    if not has_user_out(bundle) or model.folded.updated.capacity <= 0:
        return 0
    todo: dict[str, int] = {}
    with db.session() as session:
        histories = fsql.user_histories(session, external_ids=user_ids, limit=HISTORY_LIMIT)
        for user_id in user_ids:
            held, history = model.overlay.rows(user_id), histories.get(user_id)
            if held is None or history is None:
                continue
            since = set(held[held < model.n_items].tolist())
            user_row = bundle.user_index(user_id)
            if user_row is not None:
                since.difference_update(bundle.seen_items(user_row).tolist())
            for item_id in history[1]:
                row = bundle.item_index(item_id)
                if row in since and len(todo) < UPDATE_ITEMS_LIMIT:
                    todo[item_id] = row
        if not todo:
            return 0
        posted = catalogue_users(session, model, list(todo), folded_query(model))
        rows, emb = updated_catalogue(bundle, {todo[i]: u for i, u in posted.items()})
        if rows.size == 0:
            return 0
        weights = np.asarray(model.arrays["item_weights"][rows], np.float32)
        ids = [bundle.item_ids[r] for r in rows.tolist()]
        db_ids = fsql.item_ids_by_external(session, external_ids=ids)
        stored = [
            fold.stored_row(
                FoldedRow(i, emb[n], weights[n], {"model_version": model.version,
                                                  "update": UPDATE_PROVENANCE,
                                                  "interactions": posted_users(posted[i])}),
                db_ids[i],
            )
            for n, i in enumerate(ids)
            if i in db_ids
        ]
        fsql.save_folded_items(session, version=model.version, rows=stored)
    refresh_items(model, db)
    return len(stored)


def catalogue_users(
    session: Session, model: LiveModel, external_ids: list[str], query_of: QueryOf
) -> dict[str, ItemUsers]:
    """The users who interacted with each catalogue item since training (at most
    ITEM_USERS_LIMIT each, by SQL user id) and were not among its training users (the
    bundle's ``seen`` of a known user): known users by row, others by their folded query
    (left out until they have one)."""
    bundle = model.bundle
    by_item: dict[str, set[str]] = {}
    for user_id, item_id in fsql.interactions_with(session, external_ids=external_ids,
                                                   since=model.trained_until):
        by_item.setdefault(item_id, set()).add(user_id)
    out: dict[str, ItemUsers] = {}
    for item_id, users in by_item.items():
        item_row = bundle.item_index(item_id)
        rows: list[int] = []
        vectors: list[np.ndarray] = []
        for user_id in sorted(users):
            if len(rows) + len(vectors) >= ITEM_USERS_LIMIT:
                break
            row = bundle.user_index(user_id)
            if row is not None:
                if item_row not in bundle.seen_items(row):
                    rows.append(row)
            elif (q := query_of(session, user_id)) is not None:
                vectors.append(q)
        out[item_id] = ItemUsers(np.asarray(rows, np.int64),
                                 user_vectors=np.stack(vectors) if vectors else None)
    return out


def refresh_items(model: LiveModel, db: Database, *, full: bool = False) -> int:
    """Apply folded rows of the model's version stored since the last refresh (all with
    ``full``); returns how many were applied."""
    folded = model.folded
    with db.session() as session:
        watermark = fsql.folded_watermark(session, version=model.version)
        revision = crud.as_utc(watermark).isoformat() if watermark else ""
        if not full and revision <= folded.revision:
            return 0
        since = None
        if folded.revision and not full:
            since = dt.datetime.fromisoformat(folded.revision) - REFRESH_OVERLAP
        stored = fsql.folded_items(session, version=model.version, since=since)
    shape = (len(model.channels), model.bundle.dim)
    ready: list[FoldedRow] = []
    gone: list[str] = []
    updates: list[UpdatedRow] = []
    for item_id, status, emb, weights, provenance, _, _ in stored:
        trained = model.bundle.item_index(item_id)
        if trained is not None:  # a catalogue item recomputed from its users since training
            if status == "ready" and emb is not None and weights is not None:
                got = fold.row_from_sql(item_id, emb, weights, provenance, shape)
                updates.append(UpdatedRow(trained, got.emb, got.weights, got.provenance))
            continue
        if status == "ready" and emb is not None and weights is not None:
            ready.append(fold.row_from_sql(item_id, emb, weights, provenance, shape))
        else:
            gone.append(item_id)
    apply_rows(model, db, ready, gone)
    folded.put_updates(updates)
    if revision > folded.revision:
        folded.revision = revision
    return len(ready) + len(updates)


def apply_rows(
    model: LiveModel, db: Database, rows: list[FoldedRow], gone: list[str] | None = None
) -> None:
    """Put folded items into the model's rows; their catalogue fields and the interactions
    posted with them since training come from SQL (users who have them fold again)."""
    freed = model.folded.remove(gone or [])
    written, evicted = model.folded.put(rows)
    freed += evicted  # all of them, a row written again in this call too: its old item's
    if freed:  # users and labels leave before the new item's arrive below
        model.catalog.clear_rows(freed)
        for user_id in model.overlay.forget(freed):
            model.users.drop([user_id])
    if written:
        model.catalog.assign(written)
        ids = [r.item_id for r in rows]
        with db.session() as session:
            filters = crud.item_filter_rows(session, external_ids=ids)
            # interactions posted before the items had rows (text being encoded, say)
            early = fsql.interactions_with(session, external_ids=ids, since=model.overlay_since)
        model.catalog.apply(filters, model.catalog.revision)
        refold = list(model.overlay.add(early))  # their stored folds lack these items
        model.users.drop(refold)
        if refold and model.user_folder is not None:
            fold_and_store_users(model, db, refold)


def fold_missing(model: LiveModel, db: Database, limit: int) -> int:
    """Fold the newest items with content that neither the bundle nor SQL (this version)
    has a vector for; run when a model is loaded. Returns how many were folded."""
    if limit <= 0 or fold.item_folder(model.bundle) is None:
        return 0
    with db.session() as session:
        candidates = fsql.items_with_features(session, limit=limit)
        have = {r[0] for r in fsql.folded_items(session, version=model.version)}
    todo = [e for _, e in candidates if model.bundle.item_index(e) is None and e not in have]
    if not todo:
        return 0
    done = 0
    for start in range(0, len(todo), 1000):
        batch = todo[start : start + 1000]
        try:
            with db.session() as session:
                waiting = fold_and_store(session, model.bundle, model.version, batch)
            done += len(batch) - len(waiting)
        except fold.FoldRefused as exc:  # stored content this model cannot take
            log.warning("model %s: not folding items: %s", model.version, exc)
    return done
