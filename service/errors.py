"""Errors the service raises on purpose, and the one place they become HTTP responses.

    ServiceError                 (status 500, error "internal")
     ├── Unauthorized            401  no API key, or one that is unknown or revoked
     ├── Forbidden               403  a valid key whose role is too low for the action
     ├── NotFound                404  unknown user, item, model version or route
     ├── InvalidRequest          422  a value the schema cannot catch (unknown modality, ...)
     ├── Conflict                409  an action the current state forbids (activate a failed model)
     ├── ModelLoadError          409  model_load_failed: a bundle or index that cannot be loaded
     │    │                           (corrupt, mismatched); the old model stays
     │    └── BundleMissing      404  bundle_missing: the version's bundle directory is gone
     ├── NoActiveModel           503  nothing to recommend with yet; says how to train one
     ├── DatabaseNotReady        503  un-migrated or unreachable database; names the command
     ├── DatabaseUnavailable     503  database_unavailable: no answer in time (key check)
     └── (jobs.queue) QueueUnavailable  503  the job queue (Redis) does not answer

Errors raised elsewhere that reach a route map by class (``TRAINER_ERRORS``; the first
matching base wins): the trainer's BundleError 409 ``bundle_invalid``, DataError 409
``dataset_incompatible`` (stored data the trainer cannot use; bad client input is caught
earlier as 422), ConfigError 422 ``invalid_config``, ModelFitError 500 ``training_failed``,
TrainingCancelled 409 ``cancelled``, any other MargoError 500 ``trainer_error``; SQLAlchemy's
OperationalError (the database does not answer), a pool timeout (every connection busy) or a
connection lost mid-request 503 ``database_unavailable``. Every 503 carries ``Retry-After``.

Every error body is ``{"error": <code>, "detail": <readable text>}``; the CLI prints the
same text on one line.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from trainer.errors import (
    BundleError,
    ConfigError,
    DataError,
    MargoError,
    ModelFitError,
    TrainingCancelled,
)

HOW_TO_TRAIN = (
    "no model is active: train one with `margo train --out $MARGO_MODEL_DIR/<name>` "
    "(it is registered and activated at the next start), or register an existing bundle "
    "with `margo models register PATH --activate`"
)


class ServiceError(Exception):
    """Base class: an HTTP status, a short machine-readable code and a readable detail."""

    status_code = 500
    code = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, detail={self.detail!r})"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class InvalidRequest(ServiceError):
    status_code = 422
    code = "invalid_request"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class CatalogueMismatch(Conflict):
    """A bundle of another dataset than the one the database holds (ids would mix)."""

    code = "catalogue_mismatch"


class ModelLoadError(ServiceError):
    status_code = 409
    code = "model_load_failed"


class BundleMissing(ModelLoadError):
    status_code = 404
    code = "bundle_missing"


class NoActiveModel(ServiceError):
    status_code = 503
    code = "no_active_model"

    def __init__(self, detail: str = HOW_TO_TRAIN) -> None:
        super().__init__(detail)


class DatabaseNotReady(ServiceError):
    status_code = 503
    code = "database_not_ready"


class DatabaseUnavailable(ServiceError):
    """The database did not answer in time (the same code as a refused connection)."""

    status_code = 503
    code = "database_unavailable"


_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):[^\s@/]*@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it masked (``redis://:***@host``)."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


RETRY_AFTER_S = 2
"""``Retry-After`` of every 503: a dependency is down or busy, not the request wrong."""


def error_response(status_code: int, code: str, detail: str) -> Response:
    """The JSON body every error shares (never a URL's password, whatever raised it)."""
    return Response(
        orjson.dumps({"error": code, "detail": redact(detail)}),
        status_code=status_code,
        media_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)} if status_code == 503 else None,
    )


def _validation_detail(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "invalid")
        if err.get("type") == "value_error":  # our validators' own words, without pydantic's
            msg = msg.removeprefix("Value error, ")  # "Value error, " in front
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    401: "unauthorized",
    413: "payload_too_large",
}

TRAINER_ERRORS: tuple[tuple[type[MargoError], int, str], ...] = (
    (BundleError, 409, "bundle_invalid"),
    (DataError, 409, "dataset_incompatible"),
    (ConfigError, 422, "invalid_config"),
    (ModelFitError, 500, "training_failed"),
    (TrainingCancelled, 409, "cancelled"),
    (MargoError, 500, "trainer_error"),
)
"""A trainer error that reaches a route: (class, HTTP status, error code), first match wins."""


def trainer_error_status(exc: MargoError) -> tuple[int, str]:
    """The HTTP status and error code of a trainer error (see ``TRAINER_ERRORS``)."""
    return next((status, code) for cls, status, code in TRAINER_ERRORS if isinstance(exc, cls))


def install_handlers(app: FastAPI) -> None:
    """Map every error (ours, the trainer's, FastAPI's and Starlette's) to ``{error, detail}``."""

    async def on_service_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return error_response(exc.status_code, exc.code, exc.detail)

    async def on_margo_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, MargoError)
        status, code = trainer_error_status(exc)
        return error_response(status, code, str(exc))

    async def on_database_down(_: Request, exc: Exception) -> Response:
        detail = f"the database does not answer ({type(exc.__cause__ or exc).__name__}); retry"
        return error_response(503, "database_unavailable", detail)

    async def on_database_error(request: Request, exc: Exception) -> Response:
        """A connection the driver lost mid-request is the database being down, not a bug."""
        assert isinstance(exc, DBAPIError)
        if exc.connection_invalidated:
            return await on_database_down(request, exc)
        return await on_unexpected(request, exc)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "validation_error", _validation_detail(list(exc.errors())))

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response = error_response(exc.status_code, code, detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        return error_response(500, "internal", f"internal server error ({type(exc).__name__})")

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(MargoError, on_margo_error)
    app.add_exception_handler(OperationalError, on_database_down)
    app.add_exception_handler(PoolTimeout, on_database_down)  # every connection is busy
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
