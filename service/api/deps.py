"""Dependencies, each wrapped in one ``Annotated`` alias so route signatures stay short.

The cheap ones are ``async def``: FastAPI runs a plain ``def`` dependency on a worker thread,
and that hop would cost more than the recommendation itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.cache import ResponseCache
from service.errors import NoActiveModel
from service.live import LiveModel
from service.registry import Registry
from service.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    return request.app.state.margo


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_registry(state: StateDep) -> Registry:
    return state.registry


async def get_cache(state: StateDep) -> ResponseCache:
    return state.cache


def get_session(state: StateDep) -> Iterator[Session]:
    with state.db.session() as session:
        yield session


async def get_live_model(state: StateDep) -> LiveModel:
    """The model this process serves; 503 with how to train one when there is none."""
    model = state.registry.current
    if model is None:
        raise NoActiveModel()
    return model


RegistryDep = Annotated[Registry, Depends(get_registry)]
CacheDep = Annotated[ResponseCache, Depends(get_cache)]
SessionDep = Annotated[Session, Depends(get_session)]
LiveModelDep = Annotated[LiveModel, Depends(get_live_model)]
