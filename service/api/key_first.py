"""A request whose body cannot be parsed is answered for its key first.

FastAPI parses a route's JSON body before it runs the route's dependencies, so a malformed
body sent without a key would be answered 422, not 401 (and a stranger could probe the schema
that way). The validation-error handler installed here runs the route's access check (the
``require_<role>`` dependencies of service/auth.py) before it answers: a missing, unknown or
too weak key gets its 401/403, a good key the 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from service.auth import ROLE_RANK, check_access
from service.db.tables import ApiRole
from service.errors import ServiceError, error_response


def required_role(route: Any) -> ApiRole | None:
    """The highest role the route's access dependencies (``require_<role>``) ask for."""
    if not isinstance(route, APIRoute):
        return None
    roles = []
    for dep in route.dependencies:
        name = getattr(dep.dependency, "__name__", "")
        if name.startswith("require_"):
            roles.append(ApiRole(name.removeprefix("require_")))
    return max(roles, key=ROLE_RANK.__getitem__, default=None)


async def key_refusal(request: Request) -> Response | None:
    """The 401/403 the request's key earns on its route, or None (key good or not needed)."""
    if getattr(request.state, "api_key_prefix", None):
        return None  # verified already (the dependencies ran)
    needed = required_role(request.scope.get("route"))
    if needed is None:
        return None
    try:
        await check_access(request, needed)
    except ServiceError as exc:
        return error_response(exc.status_code, exc.code, exc.detail)
    return None


def check_keys_before_bodies(app: FastAPI) -> None:
    """Wrap the app's validation-error handler (install after service.errors.install_handlers)."""
    answer_invalid = app.exception_handlers[RequestValidationError]

    async def on_validation(request: Request, exc: Exception) -> Response:
        refusal = await key_refusal(request)
        if refusal is not None:
            return refusal
        return await answer_invalid(request, exc)

    app.add_exception_handler(RequestValidationError, on_validation)
