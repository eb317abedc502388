"""POST /interactions: ingest feedback, all or nothing, idempotently.

Seen items are excluded from the user's next response at once, and the user's cached
recommendations are dropped. Stored interactions are the data of the next retrain.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.exc import IntegrityError

from service.api.deps import StateDep
from service.api.responses import errors
from service.auth import WriteAccess
from service.db import crud
from service.errors import InvalidRequest
from service.schemas import IngestOut, InteractionsIn

router = APIRouter(prefix="/interactions", tags=["interactions"])

RETRIES = 3
"""A concurrent batch with the same records can win the unique index: read again, retry."""


@router.post(
    "",
    response_model=IngestOut,
    status_code=201,
    responses=errors(401, 403, 422),
    dependencies=[WriteAccess],
    summary="Store up to 10,000 interactions (unknown users are created)",
)
def add_interactions(body: InteractionsIn, state: StateDep) -> IngestOut:
    rows = [i.model_dump() for i in body.interactions]
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
        except IntegrityError:
            if attempt == RETRIES - 1:
                raise
    if result.written:
        state.registry.interactions_added(sorted({str(r["user_id"]) for r in rows}))
    return IngestOut(accepted=len(rows), written=result.written, duplicates=result.duplicates)
