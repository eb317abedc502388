"""Response cache: Redis when ``MARGO_REDIS_URL`` is set, an in-process LRU otherwise.

Entries are the encoded JSON bodies of recommendation responses, grouped by user so one call
drops all the entries of a written batch's users when their interactions change. The field of
an entry carries the model version, the catalogue revision (hidden flags and categories), the
folded items' revision, the user's interactions since training (``SeenOverlay.token``) and
every query parameter, so a new model, a hidden item or a page computed before the user's
newest interactions arrived (and stored after their invalidation) is never served.

Redis layout: one hash per user, ``<prefix>rec:<user_id>``, field -> body, with a TTL that
each write renews.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol


class ResponseCache(Protocol):
    hits: int
    misses: int

    def get(self, user_id: str, field: str) -> bytes | None: ...

    def set(self, user_id: str, field: str, body: bytes) -> None: ...

    def invalidate_users(self, user_ids: Iterable[str]) -> None: ...

    def clear(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class _Counters:
    kind = "none"

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {
            "kind": self.kind,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / total if total else 0.0,
        }


class NullCache(_Counters):
    """Caching switched off (``MARGO_CACHE_ENABLED=false``): every lookup is a miss."""

    def get(self, user_id: str, field: str) -> bytes | None:
        self.misses += 1
        return None

    def set(self, user_id: str, field: str, body: bytes) -> None:
        return None

    def invalidate_users(self, user_ids: Iterable[str]) -> None:
        return None

    def clear(self) -> None:
        return None


class LRUCache(_Counters):
    """In-process LRU of at most ``capacity`` responses."""

    kind = "memory"

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._by_user: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def get(self, user_id: str, field: str) -> bytes | None:
        key = (user_id, field)
        with self._lock:
            body = self._entries.get(key)
            if body is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return body

    def set(self, user_id: str, field: str, body: bytes) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[(user_id, field)] = body
            self._entries.move_to_end((user_id, field))
            self._by_user.setdefault(user_id, set()).add(field)
            while len(self._entries) > self.capacity:
                (old_user, old_field), _ = self._entries.popitem(last=False)
                fields = self._by_user.get(old_user)
                if fields is not None:
                    fields.discard(old_field)
                    if not fields:
                        del self._by_user[old_user]

    def invalidate_users(self, user_ids: Iterable[str]) -> None:
        with self._lock:
            for user_id in user_ids:
                for field in self._by_user.pop(user_id, ()):
                    self._entries.pop((user_id, field), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_user.clear()

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache(_Counters):
    """Shared cache in Redis. Redis trouble never fails or stalls a request: after an error
    (a refused connection, a socket timeout of a hung server) Redis is left alone for
    ``cooldown_s`` and an in-process LRU serves instead; then one call probes it again.
    Users whose entries were invalidated meanwhile are invalidated in Redis once it is back
    (more than ``MAX_MISSED`` of them: every entry is dropped), so no stale page returns."""

    kind = "redis"
    MAX_MISSED = 10_000

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        ttl_s: int,
        fallback_size: int = 10_000,
        cooldown_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.errors = 0
        self.cooldown_s = cooldown_s
        self.fallback = LRUCache(fallback_size)
        self._down_until = 0.0  # monotonic time before which Redis is not called
        self._missed: set[str] | None = set()  # invalidations Redis missed; None: too many
        self._lock = threading.Lock()

    def key(self, user_id: str) -> str:
        return f"{self.prefix}rec:{user_id}"

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self) -> None:
        self.errors += 1
        self._down_until = time.monotonic() + self.cooldown_s

    def _call(self, fn: Any, *args: Any) -> tuple[bool, Any]:
        """(True, result) when Redis answered; (False, None) when it is down or failed now
        (``errors`` counts both: calls Redis did not serve)."""
        if self.down:
            self.errors += 1
            return False, None
        if self._missed != set() and not self._replay_missed():
            return False, None
        try:
            return True, fn(*args)
        except Exception:
            self._failed()
            return False, None

    def _replay_missed(self) -> bool:
        """Apply the invalidations Redis missed while down; False if it fails again."""
        with self._lock:
            missed, self._missed = self._missed, set()
        try:
            if missed is None:
                self._clear_redis()
            elif missed:
                self.client.delete(*(self.key(u) for u in missed))
            self.fallback.clear()  # Redis is the cache again
            return True
        except Exception:
            with self._lock:
                self._missed = None if missed is None or self._missed is None else (
                    self._missed | missed
                )
            self._failed()
            return False

    def get(self, user_id: str, field: str) -> bytes | None:
        answered, body = self._call(self.client.hget, self.key(user_id), field)
        if not answered:
            body = self.fallback.get(user_id, field)
        if body is None:
            self.misses += 1
            return None
        self.hits += 1
        return bytes(body)

    def set(self, user_id: str, field: str, body: bytes) -> None:
        def write() -> None:
            key = self.key(user_id)
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, field, body)
            pipe.expire(key, self.ttl_s)
            pipe.execute()

        answered, _ = self._call(write)
        if not answered:
            self.fallback.set(user_id, field, body)

    # keys per DEL: a written batch of any size costs a few round trips, never one per user
    DELETE_CHUNK = 500

    def invalidate_users(self, user_ids: Iterable[str]) -> None:
        users = list(dict.fromkeys(user_ids))
        if not users:
            return
        self.fallback.invalidate_users(users)

        def delete() -> None:
            for start in range(0, len(users), self.DELETE_CHUNK):
                self.client.delete(*(self.key(u) for u in users[start : start + self.DELETE_CHUNK]))

        answered, _ = self._call(delete)
        if not answered:  # replayed when Redis answers again (a partial DEL is replayed whole)
            with self._lock:
                if self._missed is not None:
                    self._missed.update(users)
                    if len(self._missed) > self.MAX_MISSED:
                        self._missed = None  # too many to replay: drop everything instead

    def _clear_redis(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}rec:*", count=1000))
        if keys:
            self.client.delete(*keys)

    def clear(self) -> None:
        self.fallback.clear()
        answered, _ = self._call(self._clear_redis)
        if not answered:
            with self._lock:
                self._missed = None

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "errors": self.errors, "fallback": self.down}


def cache_field(version: str, revision: str, *params: object) -> str:
    """The hash field of one response: model version, catalogue revision, query parameters."""
    return "|".join([version, revision, *(str(p) for p in params)])
