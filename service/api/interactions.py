"""POST /interactions: ingest feedback. Seen items are excluded from the next response."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import StateDep
from service.api.responses import errors
from service.db import crud
from service.errors import NotFound
from service.schemas import InteractionsIn, InteractionsOut

router = APIRouter(prefix="/interactions", tags=["interactions"])


@router.post("", response_model=InteractionsOut, status_code=201, responses=errors(404, 422))
def add_interactions(body: InteractionsIn, state: StateDep) -> InteractionsOut:
    rows = [i.model_dump() for i in body.interactions]
    with state.db.session() as session:
        missing = crud.add_interactions(session, rows=rows)
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise NotFound(f"unknown items: {shown}")
    state.registry.interactions_added(sorted({r["user_id"] for r in rows}))
    return InteractionsOut(accepted=len(rows))
