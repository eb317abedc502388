"""API keys: creation, verification, revocation and the role dependencies routes declare.

A key reads ``mgk_<prefix>_<secret>``. Only its SHA-256 is stored; the public ``prefix`` finds
the row and the hashes are compared in constant time. Keys are random (192 bits), so a fast
hash is enough: there is nothing to brute-force that a slow hash would protect.

Roles are ordered (read < write < admin). Routes declare what they need::

    @router.post("", dependencies=[WriteAccess])

Verified keys are remembered per process for ``MARGO_API_KEY_CACHE_TTL_S`` seconds (by hash,
never in the clear), so a request with a key costs one dict lookup and no SQL; a revoked key
therefore stops working within that time. ``last_used_at`` is written at most once per
``LAST_USED_RESOLUTION_S`` per key and process: SQLite has one writer, and a write per request
would queue every read behind it. The write runs after the key check, on the database's background
lane, and a locked or hung database skips it: an audit field never turns a read into a 503.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from service.db import crud
from service.db.session import Database
from service.db.tables import ApiKey, ApiRole
from service.errors import DatabaseUnavailable, Forbidden, InvalidRequest, NotFound, Unauthorized

log = logging.getLogger(__name__)

HEADER = "X-API-Key"
KEY_PREFIX = "mgk"
ROLE_RANK = {ApiRole.READ: 0, ApiRole.WRITE: 1, ApiRole.ADMIN: 2}
LAST_USED_RESOLUTION_S = 60.0
"""``last_used_at`` is only as precise as this: an audit field, not a request log."""
MAX_KEY_LENGTH = 128


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_role(role: ApiRole | str) -> ApiRole:
    try:
        return ApiRole(role)
    except ValueError:
        roles = ", ".join(r.value for r in ApiRole)
        raise InvalidRequest(f"role: must be one of {roles}, got {role!r}") from None


def create_api_key(session: Session, role: ApiRole | str, name: str | None = None) -> str:
    """Store a new key and return it in plain text: the only time it exists in the clear."""
    role = parse_role(role)
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(24)}"
    crud.add_api_key(session, prefix=prefix, key_hash=hash_key(key), role=role.value, name=name)
    return key


def key_prefix(key: str) -> str | None:
    """The public prefix of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def verify_key(session: Session, key: str) -> ApiKey | None:
    """The key's row when it is genuine and not revoked, else None."""
    prefix = key_prefix(key)
    if prefix is None or len(key) > MAX_KEY_LENGTH:
        return None
    row = crud.api_key_by_prefix(session, prefix=prefix)
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    return row


def revoke_key(session: Session, prefix: str) -> ApiKey:
    """Mark the key with this prefix revoked (idempotent); NotFound names the prefix."""
    # accept a whole key too, so a pasted key revokes itself (it is never echoed back)
    prefix = key_prefix(prefix) or prefix
    row = crud.api_key_by_prefix(session, prefix=prefix)
    if row is None:
        raise NotFound(f"no API key with prefix {prefix!r} (see `margo keys list`)")
    if row.revoked_at is None:
        row.revoked_at = dt.datetime.now(dt.UTC)
        session.flush()
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return crud.list_api_keys(session)


# -- request-time checks -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a request needs to know about its verified key (never the key itself)."""

    id: int
    prefix: str
    role: ApiRole


class KeyCache:
    """Verified keys by hash, each kept ``ttl_s`` seconds; one per app (process)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, KeyInfo]] = {}
        self._last_used: dict[int, float] = {}  # key id -> monotonic time of the last write
        self._lock = threading.Lock()

    def get(self, digest: str) -> KeyInfo | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._entries.pop(digest, None)
            return None
        return entry[1]

    def put(self, digest: str, info: KeyInfo) -> None:
        if self.ttl_s > 0:
            self._entries[digest] = (time.monotonic() + self.ttl_s, info)

    def clear(self) -> None:
        self._entries.clear()

    def due_for_last_used(self, key_id: int) -> bool:
        """True at most once per LAST_USED_RESOLUTION_S per key (claims the slot)."""
        now = time.monotonic()
        with self._lock:
            last = self._last_used.get(key_id)
            if last is not None and now - last < LAST_USED_RESOLUTION_S:
                return False
            self._last_used[key_id] = now
            return True

    def last_use_not_recorded(self, key_id: int) -> None:
        """Give the slot back: the next request with this key tries the write again."""
        with self._lock:
            self._last_used.pop(key_id, None)


def key_cache(request: Request) -> KeyCache:
    """The app's key cache, made on first use."""
    app_state = request.app.state
    cache = getattr(app_state, "api_keys", None)
    if cache is None:
        cache = app_state.api_keys = KeyCache(app_state.margo.settings.api_key_cache_ttl_s)
    return cache


def _lookup(request: Request, key: str, digest: str) -> KeyInfo | None:
    """Verify against SQL (a worker thread); a read only."""
    with request.app.state.margo.db.session() as session:
        row = verify_key(session, key)
        if row is None:
            return None
        info = KeyInfo(row.id, row.prefix, ApiRole(row.role))
    key_cache(request).put(digest, info)
    return info


def _record_last_use(db: Database, cache: KeyCache, key_id: int) -> None:
    """Write ``last_used_at`` (a worker thread nobody waits for). SQLite locked by another
    process, or SQL hung: skipped and logged, and the next request with the key tries again
    (bench/faults.py and tests/service/test_sqlite_locked.py: it used to make the key check a
    503)."""
    try:
        with db.session() as session:
            crud.touch_api_key(session, key_id=key_id, at=dt.datetime.now(dt.UTC))
    except (DBAPIError, PoolTimeout) as exc:
        cache.last_use_not_recorded(key_id)
        log.warning("API key %s: last use not recorded (%s)", key_id, type(exc).__name__)


def _record_last_use_later(request: Request, info: KeyInfo) -> None:
    cache = key_cache(request)
    if cache.due_for_last_used(info.id):
        db = request.app.state.margo.db.background  # bounded: never the requests' pool
        asyncio.get_running_loop().run_in_executor(None, _record_last_use, db, cache, info.id)


async def _lookup_in_time(request: Request, key: str, digest: str) -> KeyInfo | None:
    """:func:`_lookup` on a worker thread, waited for at most ``MARGO_DB_POOL_TIMEOUT_S``: a
    database that stops answering is a 503 at once, not a request (and a thread) stuck in
    line; the abandoned lookup finishes or fails on its own."""
    wait_s = request.app.state.margo.settings.db_pool_timeout_s
    try:
        with anyio.fail_after(wait_s):
            info = await anyio.to_thread.run_sync(
                _lookup, request, key, digest, abandon_on_cancel=True
            )
    except TimeoutError:
        raise DatabaseUnavailable(
            f"the database did not answer the key check within {wait_s:g} s; retry"
        ) from None
    if info is not None:
        _record_last_use_later(request, info)
    return info


async def check_access(request: Request, needed: ApiRole) -> KeyInfo | None:
    """Raise 401/403 unless the request may do what ``needed`` allows.

    Returns the key's info, or None for a keyless read under ``MARGO_PUBLIC_READS``.
    """
    key = request.headers.get(HEADER)
    if not key:
        if needed is ApiRole.READ and request.app.state.margo.settings.public_reads:
            return None
        raise Unauthorized(f"this endpoint needs an API key with role {needed.value} in {HEADER}")
    digest = hash_key(key)
    info = key_cache(request).get(digest)
    if info is None:
        info = await _lookup_in_time(request, key, digest)
        if info is None:
            raise Unauthorized(f"the key in {HEADER} is unknown or revoked")
    if ROLE_RANK[info.role] < ROLE_RANK[needed]:
        raise Forbidden(f"this endpoint needs role {needed.value}; the key has {info.role.value}")
    request.state.api_key_prefix = info.prefix  # for logs: the public prefix only
    return info


def is_admin(key: KeyInfo | None) -> bool:
    """Whether a request's verified key is an admin key (server paths are shown to those)."""
    return key is not None and key.role is ApiRole.ADMIN


def _require(needed: ApiRole):  # noqa: ANN202 - a FastAPI dependency factory
    # async: a cache hit must not pay FastAPI's hop to a worker thread
    async def dependency(request: Request) -> KeyInfo | None:
        return await check_access(request, needed)

    dependency.__name__ = f"require_{needed.value}"
    return Depends(dependency)


ReadAccess = _require(ApiRole.READ)
WriteAccess = _require(ApiRole.WRITE)
AdminAccess = _require(ApiRole.ADMIN)
