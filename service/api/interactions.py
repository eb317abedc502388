"""POST /interactions: ingest feedback, all or nothing, idempotently.

Seen items are excluded from the user's next response at once, and the user's cached
recommendations are dropped. Stored interactions are the data of the next retrain.
"""

from __future__ import annotations

import logging
import random
import time

from fastapi import APIRouter, BackgroundTasks
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.api.deps import StateDep
from service.api.responses import errors
from service.auth import WriteAccess
from service.db import crud
from service.errors import InvalidRequest
from service.fresh.user_sync import fold_after_write
from service.schemas import IngestOut, InteractionsIn

router = APIRouter(prefix="/interactions", tags=["interactions"])
log = logging.getLogger(__name__)

RETRIES = 8
"""Concurrent batches with the same records do not conflict (the insert skips what another
stored meanwhile, in one lock order: crud.ingest_interactions); a transaction the database
still rolls back (a deadlock it detected, SQLite's lock timeout) is run again from scratch,
while the request's answer budget (MARGO_DB_ANSWER_TIMEOUT_S) lasts: a SQLite database
another process keeps locked is a 503 within it, not RETRIES busy timeouts in a row."""

_RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock detected


def _retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    if getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    return "database is locked" in str(exc.orig)


@router.post(
    "",
    response_model=IngestOut,
    status_code=201,
    responses=errors(401, 403, 422),
    dependencies=[WriteAccess],
    summary="Store up to 10,000 interactions (unknown users are created)",
)
def add_interactions(
    body: InteractionsIn, state: StateDep, background: BackgroundTasks
) -> IngestOut:
    rows = [i.model_dump() for i in body.interactions]
    deadline = time.monotonic() + state.settings.db_answer_timeout_s
    for attempt in range(RETRIES):
        try:
            with state.db.session() as session:
                result = crud.ingest_interactions(session, rows=rows)
                if result.first_unknown is not None:
                    raise InvalidRequest(
                        f"interactions.{result.first_unknown}.item_id: unknown item "
                        f"{result.unknown_item!r}; nothing was stored (create items with "
                        "POST /items first)"
                    )
            break
        except DBAPIError as exc:
            pause = random.uniform(0.005, 0.02) * 2**attempt  # jitter: not in lockstep
            late = time.monotonic() + pause >= deadline
            if attempt == RETRIES - 1 or late or not _retryable(exc):
                raise
            time.sleep(pause)
    if result.written:
        users = sorted({str(r["user_id"]) for r in rows})
        try:
            state.registry.interactions_added(users)
            # the users' folded queries after the answer: a write waits for its commit only
            background.add_task(
                fold_after_write,
                state.registry.current,
                state.db.background,  # bounded: folds cannot take the pool from requests
                users,
                state.settings.foldin_write_users,
            )
        except (OperationalError, PoolTimeout):
            # the rows are committed: a 503 would say they were not (bench/faults.py saw it
            # when SQL hung or reset mid-request); the poller applies them to the overlay and
            # drops the users' pages, and their next reads fold them
            log.warning("interactions stored; their live update waits for the poller (SQL)")
    return IngestOut(accepted=len(rows), written=result.written, duplicates=result.duplicates)
