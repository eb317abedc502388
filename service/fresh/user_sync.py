"""Users' folds between SQL and a loaded model: a read folds only when SQL has no current
row (new model version, or the writer has not folded the user yet or dropped them from its
queue); the process that takes ``POST /interactions`` folds its users after the answer
(WriteFolds: coalesced, bounded, batched), with the items their writes move (sync.py).
The cache of folded queries: service/fresh/users.py."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from service.db.crud import foldin as fsql
from service.db.session import Database
from service.fresh.sync import refold_posted_items, update_catalogue_items
from service.fresh.user_folds import fold_and_save, fold_and_store_users, prior_of
from service.fresh.users import FoldedUser

if TYPE_CHECKING:
    from service.live import LiveModel

log = logging.getLogger(__name__)


def user_query(model: LiveModel, db: Database, user_id: str) -> FoldedUser | None:
    """The user's folded query, or None when they have posted nothing the model can use since
    it was trained (or it has no fold-in). Cached; SQL on a miss (one query); folds, in the
    same transaction, only when SQL has no current row (the writer's fold has not landed,
    or a new model version)."""
    if model.overlay.rows(user_id) is None or model.user_folder is None:
        return None
    hit = model.users.get(user_id)
    if hit is not None:
        return hit
    since = model.users.mark()  # a write while SQL is read keeps the entry out of the cache
    with db.session() as session:
        now = fsql.folded_user_now(session, external_id=user_id, version=model.version)
        if now is None:
            return None
        _, emb, items, last, newest = now
        if emb is not None and last >= newest:
            shape = (len(model.channels), model.bundle.dim)
            vector = np.frombuffer(emb, dtype=np.float32).reshape(shape)
            entry = FoldedUser(vector, items, last, prior_of(model, user_id))
            model.users.put(user_id, entry, since=since)
            return entry
        folded = fold_and_save(session, model, [user_id])
    for user, entry in folded.items():
        model.users.put(user, entry, since=since)
    WRITES.forget(model, list(folded))  # folded from SQL after their writes: a queued fold
    return folded.get(user_id)  # would repeat this one


def fold_users_on_write(model: LiveModel, db: Database, user_ids: list[str]) -> int:
    """Fold the given users of written batches now; returns how many were folded."""
    if model.user_folder is None:
        return 0
    refold_posted_items(model, db, user_ids)  # first: the users' folds see the new vectors
    model.users.drop(user_ids)
    todo = [u for u in user_ids if model.overlay.rows(u) is not None]
    folded = len(fold_and_store_users(model, db, todo)) if todo else 0
    # after: a newcomer counts by the query just folded (the users' folds read catalogue
    # items' trained vectors, as bench/freshness.py's 'fold-in + item update' arm does)
    update_catalogue_items(model, db, user_ids)
    return folded


class WriteFolds:
    """The process's users of written batches waiting for their fold (after POST
    /interactions answered), folded by one thread at a time in batches.

    Coalesced: a user written again while waiting is folded once, from their history as SQL
    has it then (the newest wins). Bounded: at most ``limit`` users wait
    (MARGO_FOLDIN_WRITE_USERS); past it the longest waiting leave the queue and fold on
    their next request, as a user does whose fold has not run yet (service/fresh/users.py).
    One thread at a time folds (the one that found nobody folding, until the queue is
    empty): a steady writer costs a process at most one thread folding batches, however
    many writes it takes. It does not pause between batches: a written user whose fold
    waits is folded by their next read, alone and inline (3 queries), where the batch costs
    ~1 ms a user; with a pause taking half the time, bench.faults' no-fault load (4 readers,
    a writer of 100 users per batch) served 101-120 recommendations/s, without 137-146."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: OrderedDict[str, tuple[LiveModel, Database]] = OrderedDict()
        self._busy = False
        self.in_flight = 0  # users of the batch being folded (out of the queue already)
        self.folded = 0
        self.coalesced = 0
        self.dropped = 0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def backlog(self) -> int:
        """Users waiting for their fold or being folded now (``/metrics``)."""
        with self._lock:
            return len(self._waiting) + self.in_flight

    def forget(self, model: LiveModel, user_ids: list[str]) -> None:
        """Unqueue users of ``model`` that a read has just folded from SQL."""
        with self._lock:
            for user_id in user_ids:
                waiting = self._waiting.get(user_id)
                if waiting is not None and waiting[0] is model:
                    del self._waiting[user_id]
                    self.forgotten += 1

    def submit(self, model: LiveModel, db: Database, user_ids: list[str], limit: int) -> bool:
        """Queue the users; True when the caller should fold (nobody is folding)."""
        with self._lock:
            for user_id in user_ids:
                if user_id in self._waiting:
                    self.coalesced += 1
                self._waiting[user_id] = (model, db)  # a waiting user keeps their place
            while len(self._waiting) > limit:
                self._waiting.popitem(last=False)
                self.dropped += 1
            if self._busy or not self._waiting:
                return False
            self._busy = True
            return True

    def drain(self, limit: int) -> None:
        """Fold waiting users, at most ``limit`` per batch, until none waits."""
        try:
            while True:
                with self._lock:
                    self.in_flight = 0
                    if not self._waiting:
                        self._busy = False
                        return
                    batch = [
                        self._waiting.popitem(last=False)
                        for _ in range(min(max(limit, 1), len(self._waiting)))
                    ]
                    self.in_flight = len(batch)
                groups: dict[int, tuple[LiveModel, Database, list[str]]] = {}
                for user_id, (model, db) in batch:
                    groups.setdefault(id(model), (model, db, []))[2].append(user_id)
                for model, db, users in groups.values():
                    self.folded += _fold_logged(model, db, users)
        except BaseException:
            with self._lock:
                self._busy, self.in_flight = False, 0
            raise


WRITES = WriteFolds()


def _fold_logged(model: LiveModel, db: Database, user_ids: list[str]) -> int:
    """fold_users_on_write; failures leave the users to be folded by their next reads."""
    try:
        return fold_users_on_write(model, db, user_ids)
    except (OperationalError, SATimeoutError) as exc:
        log.warning("folding written users deferred to their next reads: %s", exc.__class__)
    except Exception:  # noqa: BLE001 - after the answer: nobody else would see it
        log.exception("folding written users failed; their next reads fold them")
    return 0


def fold_after_write(
    model: LiveModel | None, db: Database, user_ids: list[str], limit: int
) -> None:
    """Queue the written users' folds (WriteFolds, at most ``limit`` waiting) after POST
    /interactions has answered, and fold them unless another thread of this process is
    folding already (then it folds them too)."""
    if model is None or model.user_folder is None or limit <= 0:
        return
    if WRITES.submit(model, db, user_ids, limit):
        WRITES.drain(limit)
