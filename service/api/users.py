"""GET /users/{user_id}/recommendations: the hot path; GET /users: find users by id prefix.

The payload is built as plain dicts (service/ranking.py) and encoded once with orjson; the
encoded body is what the cache stores, so a hit costs one lookup and no encoding.

The route is served by a plain Starlette endpoint (``fast_route``) mounted ahead of the
documented FastAPI one: FastAPI's per-parameter dependency solving costs about a third as
much as the ranking itself, so the fast endpoint validates the query with the same pydantic
model (``RecParams``) in one call and raises the same errors. The FastAPI route below is what
``/docs`` shows; it answers the same way (tests/service/api/test_users.py checks both).
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.deps import StateDep
from service.api.responses import errors, json_bytes
from service.auth import ReadAccess, check_access
from service.cache import cache_field
from service.db import crud
from service.db.tables import ApiRole
from service.errors import NoActiveModel
from service.fresh.user_sync import user_query
from service.limits import SafeId, id_problem
from service.metrics import CACHE_HIT, CACHE_MISS
from service.ranking import RecQuery, recommend
from service.schemas import RecommendationsOut, RecParams, UserOut, UsersOut
from service.state import ServiceState

router = APIRouter(prefix="/users", tags=["recommendations"])

PATH = "/{user_id}/recommendations"
MAX_ID = 255


async def serve_recommendations(state: ServiceState, user_id: str, params: RecParams) -> Response:
    # the live model is read once: a swap during this request does not change it
    model = state.registry.current
    if model is None:
        raise NoActiveModel()
    categories = tuple(sorted(set(params.category)))
    k, offset = params.k, params.offset
    query = RecQuery(user_id, k, offset, params.exclude_seen, params.explain, categories)
    # read before the state it names (catalog, folded items, the user's rows since training):
    # a page computed while one of them changes is stored under the old name
    field = cache_field(
        model.version, model.catalog.revision, model.folded.revision,
        model.overlay.token(user_id), k, offset, query.exclude_seen, query.explain, *categories,
    )  # fmt: skip
    cache = state.cache
    body = cache.get(user_id, field)
    if body is not None:
        CACHE_HIT.inc()
    else:
        CACHE_MISS.inc()
        cfg = state.ranking
        # interactions since training: the user's folded query (SQL, or a fold, on a miss)
        folded, degraded = None, False
        if model.overlay.rows(user_id) is not None and model.user_folder is not None:
            try:
                folded = model.users.get(user_id) or await run_in_threadpool(
                    user_query, model, state.db, user_id
                )
            except (OperationalError, PoolTimeout):
                # SQL does not answer: a read still answers, with the trained query (or the
                # popular list), and that page is not cached (issue 14: reads survive a hang)
                degraded = True
        if categories or offset + k > cfg.candidate_pool:
            # may fall back to exact search: keep the event loop free meanwhile
            payload = await run_in_threadpool(recommend, model, query, cfg, folded)
        else:
            payload = recommend(model, query, cfg, folded)
        body = orjson.dumps(payload)
        if not degraded:
            cache.set(user_id, field, body)
    return json_bytes(body)


async def fast_recommendations(request: Request) -> Response:
    """The same contract as ``recommendations`` below, without FastAPI's per-field solving."""
    # FastAPI dependencies do not run here: the same access check, called directly (a keyless
    # request under MARGO_PUBLIC_READS costs two attribute reads, a keyed one a dict lookup)
    await check_access(request, ApiRole.READ)
    user_id = request.path_params["user_id"]
    query = request.query_params
    raw: dict[str, object] = {
        name: query[name] for name in ("k", "offset", "exclude_seen", "explain") if name in query
    }
    if "category" in query:
        raw["category"] = query.getlist("category")
    problems = []
    if len(user_id) > MAX_ID:
        problems.append(
            {"loc": ("path", "user_id"), "msg": f"String should have at most {MAX_ID} characters"}
        )
    elif (bad := id_problem(user_id)) is not None:
        problems.append({"loc": ("path", "user_id"), "msg": bad})
    try:
        params = RecParams.model_validate(raw)
    except ValidationError as exc:
        problems += [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
    if problems:
        raise RequestValidationError(problems)
    return await serve_recommendations(request.app.state.margo, user_id, params)


fast_route = Route(f"/users{PATH}", fast_recommendations, methods=["GET"], include_in_schema=False)
"""Mounted ahead of every other route by ``service.app.create_app``."""


@router.get(
    "",
    response_model=UsersOut,
    responses=errors(401, 403, 422),
    summary="Users whose id starts with a prefix (for pickers and search boxes)",
    dependencies=[ReadAccess],
)
def find_users(
    state: StateDep,
    prefix: Annotated[SafeId, Query(max_length=MAX_ID)] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> UsersOut:
    with state.db.session() as session:
        found = crud.find_users(session, prefix=prefix, limit=limit)
    model = state.registry.current
    return UsersOut(
        users=[
            UserOut(
                user_id=user_id,
                personal=model is not None and model.bundle.user_index(user_id) is not None,
                interactions=n,
            )
            for user_id, n in found
        ]
    )


@router.get(
    PATH,
    response_model=RecommendationsOut,
    responses=errors(401, 403, 422, 503),
    summary="Top-k items for a user, with per-modality explanations",
    dependencies=[ReadAccess],
)
async def recommendations(
    user_id: Annotated[SafeId, Path(min_length=1, max_length=MAX_ID)],
    params: Annotated[RecParams, Query()],
    state: StateDep,
) -> Response:
    """Items ranked by ``sum_m w_i^m (e_u^m . e_i^m)``; unknown users get popular items,
    or (``strategy: fold-in``) items for a query folded in from the interactions they posted.

    Pages of one model version never overlap: page ``[offset, offset + k)`` is a slice of the
    user's one ranking. Hidden items never appear; ``category`` keeps items carrying every
    given label; ``exclude_seen`` drops the user's training interactions and those ingested
    since (POST /interactions).
    """
    return await serve_recommendations(state, user_id, params)
