"""Cross-process notifications over Redis pub/sub (only when ``MARGO_REDIS_URL`` is set).

Events only wake the registry's poller early; SQL stays the source of truth, and every process
polls it anyway, so a lost message delays a change by at most one poll interval.

Messages are JSON objects on ``<prefix>events``:
``{"event": "model_activated", "version": ...}``, ``{"event": "items_changed"}``,
``{"event": "interactions", "users": [...]}``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import orjson

log = logging.getLogger(__name__)

RECONNECT_S = 2.0
"""Pause before re-subscribing after a Redis error."""
REDIS_TIMEOUT_S = 0.5
"""Socket timeout of Redis calls; a slow Redis costs a cache miss, not a stuck request."""


def redis_client(url: str) -> Any:
    """The service's Redis client (cache, events, job queue): short timeouts."""
    import redis

    return redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )


class EventBus:
    def __init__(self, client: Any | None, *, prefix: str) -> None:
        self.client = client
        self.channel = f"{prefix}events"
        self.origin = f"{os.getpid()}-{id(self)}"

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def publish(self, event: str, **payload: Any) -> None:
        if self.client is None:
            return
        message = orjson.dumps({"event": event, "origin": self.origin, **payload})
        try:
            self.client.publish(self.channel, message)
        except Exception as exc:  # pollers still pick the change up from SQL
            log.warning("cannot publish %s on %s: %s", event, self.channel, exc)

    def listen(self, on_event: Callable[[dict[str, Any]], None], stop: threading.Event) -> None:
        """Thread body: call ``on_event`` for every message from another process until stopped."""
        while not stop.is_set() and self.client is not None:
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                while not stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        event = orjson.loads(message["data"])
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(event, dict) and event.get("origin") != self.origin:
                        on_event(event)
            except Exception as exc:
                log.warning("event listener on %s: %s; reconnecting", self.channel, exc)
                stop.wait(RECONNECT_S)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
