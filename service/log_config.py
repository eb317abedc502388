"""Log lines: one JSON object per line (or plain text), each carrying the request id.

The request id lives in a context variable set by service/middleware.py, so every line logged
while a request runs names it, whichever module logs. Anything shaped like an API key is
masked before a line is written: keys are never logged, even by mistake.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from contextvars import ContextVar
from typing import Any

import orjson

from service.settings import LogFormat

request_id_var: ContextVar[str | None] = ContextVar("margo_request_id", default=None)

_KEY_PATTERN = re.compile(r"(mgk_[0-9A-Za-z]+_)[0-9A-Za-z_\-]+")


def mask_keys(text: str) -> str:
    """``mgk_<prefix>_<secret>`` -> ``mgk_<prefix>_***`` (the prefix is public)."""
    return _KEY_PATTERN.sub(r"\1***", text) if "mgk_" in text else text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id"?, ...fields, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            out["request_id"] = request_id
        out.update(_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return mask_keys(orjson.dumps(out, default=str).decode())


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message key=value ...`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: dict[str, Any] = {}
        request_id = request_id_var.get()
        if request_id is not None:
            fields["request_id"] = request_id
        fields.update(_fields(record))  # the access line names its request id itself: once
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        return mask_keys(f"{line} {extra}".rstrip())


def formatter(fmt: LogFormat | str) -> logging.Formatter:
    return JsonFormatter() if LogFormat(fmt) is LogFormat.JSON else TextFormatter()


def logging_config(fmt: LogFormat | str, level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the service and uvicorn (each worker applies it)."""
    factory = "service.log_config.JsonFormatter"
    if LogFormat(fmt) is LogFormat.TEXT:
        factory = "service.log_config.TextFormatter"
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "margo", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"margo": {"()": factory}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": "WARNING"},
        "loggers": {
            "service": {"level": level},
            "trainer": {"level": level},
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"level": "WARNING"},  # service.access writes one line instead
        },
    }
