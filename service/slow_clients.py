"""Slow and oversized clients on ``margo serve``: uvicorn's httptools protocol plus the bounds it
lacks (issue 14).

uvicorn (0.55) closes an idle keep-alive connection after ``timeout_keep_alive``, but never
bounds how long a request takes to arrive: a client that opens connections and sends headers a
byte every few seconds (slowloris) holds each one for ever, and headers have no size limit. This
protocol adds, per connection:

- headers complete within ``MARGO_CLIENT_HEADER_TIMEOUT_S`` of the connection opening (first
  request) or of the request's first byte (later ones), else 408 JSON and close (a connection
  that sent nothing is just closed);
- a body that stalls longer than ``MARGO_CLIENT_BODY_TIMEOUT_S`` between two reads closes the
  connection (nginx's ``client_body_timeout``; time the server itself is not reading, under
  flow control or before ``100 Continue``, does not count);
- headers larger than ``MARGO_MAX_HEADER_BYTES``: 431 JSON and close.

What remains: each slow connection still holds a socket until its timeout, so a client with
enough addresses can keep many open (the compose stack's nginx caps connections per address).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import get_settings


def raw_error(status: int, reason: str, error: str, detail: str) -> bytes:
    """A complete HTTP/1.1 error response with the service's JSON body, closing the connection."""
    body = orjson.dumps({"error": error, "detail": detail})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedHttpTools(HttpToolsProtocol):
    """``HttpToolsProtocol`` with header and body read deadlines and a header size limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout_s = settings.client_header_timeout_s
        self.body_timeout_s = settings.client_body_timeout_s
        self.max_header_bytes = settings.max_header_bytes
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_headers = True  # a request's headers are being read
        self._header_bytes = 0
        self._started = False  # any byte of the current request received

    # -- connection ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
            self._started = True
        super().data_received(data)
        if self._in_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large", "headers_too_large",
                         f"request headers over {self.max_header_bytes} bytes "
                         "(MARGO_MAX_HEADER_BYTES)")  # fmt: skip

    # -- parser callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        if self._header_timer is None:  # a later request on a kept-alive connection
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._in_headers, self._header_bytes, self._started = False, 0, False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        self._arm_body_timer()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # -- timers --------------------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_late)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if not self._started:  # nothing sent: an idle connection, closed without a word
            self.transport.close()
            return
        self._refuse(408, "Request Timeout", "request_timeout",
                     f"request headers not complete within {self.header_timeout_s:g} s "
                     "(MARGO_CLIENT_HEADER_TIMEOUT_S)")  # fmt: skip

    def _body_late(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.cycle is None or not self.cycle.more_body:
            return
        if self.flow.read_paused or self.cycle.waiting_for_100_continue:
            self._arm_body_timer()  # the server is not reading: the client is not late
            return
        self.transport.close()  # the app sees a disconnect; its response would go nowhere

    def _refuse(self, status: int, reason: str, error: str, detail: str) -> None:
        self._cancel_timers()
        if not self.transport.is_closing():
            self.transport.write(raw_error(status, reason, error, detail))
            self.transport.close()
