"""The FastAPI application factory (``uvicorn --factory service.app:create_app``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from service.api import api_router
from service.api.key_first import check_keys_before_bodies
from service.api.metrics import metrics_route
from service.api.responses import OrjsonResponse
from service.api.users import fast_route
from service.api_docs import install_api_docs
from service.dashboard import install_dashboard
from service.errors import ServiceError, install_handlers
from service.middleware import LimitBody, ObserveRequests
from service.settings import Settings, get_settings
from service.state import ServiceState

log = logging.getLogger(__name__)

STARTUP_WAIT_S = 30.0
"""How long a starting process waits for its start-up model load before it takes requests."""

DESCRIPTION = """\
Multimodal recommendations from a MARGO model: every recommended item says which of its
modalities carried it (score, learned reliability weight, contribution, share).
Every error body is `{"error": ..., "detail": ...}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Connections open at start-up (lifespan), not here."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            state = ServiceState.open(settings)
        except ServiceError as exc:
            log.error("%s", exc.detail)  # e.g. "... run `margo db upgrade` ..."
            raise
        app.state.margo = state
        state.registry.start()
        state.start_jobs()
        # uvicorn accepts connections once this returns: a worker that replaces a dead one
        # (--workers N share one socket) would take its share of requests and answer them 503
        # until its model is loaded; waiting here (bounded, a huge model still gets /readyz
        # 503 after it) leaves them to the workers that are ready
        await anyio.to_thread.run_sync(state.registry.wait_ready, STARTUP_WAIT_S)
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="MARGO recommendations",
        version="0.1.0",
        description=DESCRIPTION,
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from a CDN: served locally below
        redoc_url=None,
    )
    install_handlers(app)
    check_keys_before_bodies(app)  # a malformed body without a key: 401, not 422
    app.router.routes.insert(0, fast_route)  # the hot path, ahead of its documented twin
    app.include_router(api_router)
    install_dashboard(app)  # the web page at / (the API reference stays at /docs)
    install_api_docs(app)
    if settings.metrics_enabled:
        app.router.routes.append(metrics_route)
    app.add_middleware(LimitBody, max_bytes=settings.max_body_bytes)
    app.add_middleware(  # outermost: it sees (and logs) the 413s too
        ObserveRequests, metrics=settings.metrics_enabled, log_requests=settings.log_requests
    )
    return app
