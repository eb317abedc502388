"""Pure ASGI middleware: ``ObserveRequests`` around every request (request id, latency metric,
access log, a JSON 500 for an escaped exception) and ``LimitBody`` (413 for an oversized body).

The request id is taken from ``X-Request-ID`` when the caller sends a sane one (up to 128
characters of ``[A-Za-z0-9._:-]``), else a new one is made; it is echoed back in the response
header and names every log line written while the request runs. The access line carries the
method, route template, path, status, duration and, when a key was used, its public prefix:
never headers, never a key. A pure ASGI class, not ``BaseHTTPMiddleware``: that one costs a
task and a stream per request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response
from service.log_config import request_id_var
from service.metrics import UNMATCHED, RequestTimer

HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")

access_log = logging.getLogger("service.access")
log = logging.getLogger(__name__)


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == HEADER:
            return value.decode() if _SANE_ID.fullmatch(value) else None
    return None


def relative_locations(headers: Any) -> list[tuple[bytes, bytes]]:
    """A redirect's ``Location`` without scheme and host: the router builds it from the
    request's ``Host`` header, which the client controls (``GET /models/`` -> ``/models``)."""
    out = []
    for name, value in headers:
        if name.lower() == b"location":
            parts = urlsplit(value.decode("latin-1"))
            if parts.scheme or parts.netloc:
                relative = urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))
                value = relative.encode("latin-1")
        out.append((name, value))
    return out


# answers that say "not ready" or "a dependency is down" are expected states, not server faults:
# /readyz answers 503 until the model is loaded, and a 503 elsewhere is a degraded dependency
_EXPECTED_503 = frozenset({"/readyz"})


def _level(template: str, status: int) -> int:
    if status == 503:
        return logging.INFO if template in _EXPECTED_503 else logging.WARNING
    return logging.ERROR if status >= 500 else logging.INFO


class ObserveRequests:
    def __init__(self, app: ASGIApp, *, metrics: bool = True, log_requests: bool = True) -> None:
        self.app = app
        self.timer = RequestTimer() if metrics else None
        self.log_requests = log_requests
        self._plain: dict[Any, str] | None = None  # endpoint -> template of plain routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        header = (HEADER, request_id.encode())
        status = 500  # unless a response starts: an exception escaped every handler
        started = False
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                headers = message.get("headers", ())
                if 300 <= status < 400:
                    headers = relative_locations(headers)
                message["headers"] = [*headers, header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # answered here, not re-raised: an exception reaching the server makes it drop the
            # keep-alive connection (without `Connection: close`), and the client's next request
            # on it fails too. A response already under way cannot be fixed: re-raise then.
            if started:
                raise
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            detail = f"internal server error ({type(exc).__name__})"
            await error_response(500, "internal", detail)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            template = self._template(scope)
            if self.timer is not None:
                self.timer.observe(scope["method"], template, status, elapsed)
            if self.log_requests:
                self._log(scope, request_id, template, status, elapsed)
            request_id_var.reset(token)

    def _template(self, scope: Scope) -> str:
        """The matched route's path template; FastAPI records plain Starlette routes (the
        recommendation fast path, /metrics) only as the endpoint they ran."""
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path", UNMATCHED)
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        if self._plain is None:
            app = scope.get("app")
            routes = getattr(getattr(app, "router", None), "routes", ())
            self._plain = {
                r.endpoint: r.path for r in routes if isinstance(r, Route) and r.path is not None
            }
            # a mount (static files) records its app as the endpoint: one template per mount
            mounts = (r for r in routes if isinstance(r, Mount))
            self._plain.update({m.app: f"{m.path}/{{path}}" for m in mounts})
        return self._plain.get(endpoint, UNMATCHED)

    @staticmethod
    def _log(scope: Scope, request_id: str, template: str, status: int, elapsed: float) -> None:
        level = _level(template, status)
        if not access_log.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "request_id": request_id,  # explicit: a handler may format after the request
            "method": scope["method"],
            "route": template,
            "path": scope["path"],
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
        }
        state = scope.get("state")
        prefix = state.get("api_key_prefix") if isinstance(state, dict) else None
        if prefix:
            fields["key_prefix"] = prefix
        # a record made directly: Logger.log would walk the stack for a caller no one reads
        record = access_log.makeRecord(
            access_log.name, level, __file__, 0, "request", (), None, extra={"fields": fields}
        )
        access_log.handle(record)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body outgrows the limit: an HTTPException, so FastAPI's
    body reader passes it on (it turns other exceptions into a 400) and it becomes a 413."""

    def __init__(self, limit: int) -> None:
        detail = f"the request body is larger than {limit} bytes (MARGO_MAX_BODY_BYTES)"
        super().__init__(413, detail)


class LimitBody:
    """413 JSON for a request body over ``max_bytes``: at once when ``Content-Length`` says so
    (nothing is read), else as soon as the streamed body passes the limit (nothing more is read).
    A pure ASGI class, like ObserveRequests."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes
        if scope["type"] != "http" or limit <= 0:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await self._refuse(scope, receive, send)
                    return
                break
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watch_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watch_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "payload_too_large", BodyTooLarge(self.max_bytes).detail)
        # the rest of the body stays unread: the connection cannot be reused, and says so
        response.headers["connection"] = "close"
        await response(scope, receive, send)
