"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import StateDep
from service.api.responses import errors
from service.errors import DatabaseNotReady, NoActiveModel
from service.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    """The process is alive (no dependency is checked)."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses=errors(503))
def readyz(state: StateDep) -> ReadyOut:
    """200 once a model is live and the database answers, 503 before."""
    if not state.db.ping():
        raise DatabaseNotReady("the database does not answer")
    model = state.registry.current
    if model is None:
        if not state.registry.started.is_set():
            raise NoActiveModel("starting: the model is still loading")
        raise NoActiveModel()
    return ReadyOut(status="ready", model_version=model.version, cache=state.cache.stats())
