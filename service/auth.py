"""API keys: creation, verification and the role dependencies routes declare.

A key reads ``mgk_<prefix>_<secret>``. Only its SHA-256 is stored; the public ``prefix`` finds
the row and the hashes are compared in constant time. Keys are random (192 bits), so a fast
hash is enough: there is nothing to brute-force that a slow hash would protect.

Roles are ordered (read < write < admin). Routes declare what they need::

    @router.post("", dependencies=[WriteAccess])
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.tables import ApiKey, ApiRole
from service.errors import Forbidden, InvalidRequest, Unauthorized

HEADER = "X-API-Key"
KEY_PREFIX = "mgk"
ROLE_RANK = {ApiRole.READ: 0, ApiRole.WRITE: 1, ApiRole.ADMIN: 2}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, role: ApiRole | str, name: str | None = None) -> str:
    """Store a new key and return it in plain text: the only time it exists in the clear."""
    try:
        role = ApiRole(role)
    except ValueError:
        roles = ", ".join(r.value for r in ApiRole)
        raise InvalidRequest(f"role: must be one of {roles}, got {role!r}") from None
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(24)}"
    session.add(ApiKey(prefix=prefix, key_hash=hash_key(key), role=role.value, name=name))
    session.flush()
    return key


def verify_key(session: Session, key: str) -> ApiKey | None:
    """The key's row when it is genuine and not revoked, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == parts[1])).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    return row


def check_access(request: Request, needed: ApiRole) -> ApiKey | None:
    """Raise 401/403 unless the request may do what ``needed`` allows."""
    state = request.app.state.margo
    key = request.headers.get(HEADER)
    if not key:
        if needed is ApiRole.READ and state.settings.public_reads:
            return None
        raise Unauthorized(f"this endpoint needs an API key with role {needed.value} in {HEADER}")
    with state.db.session() as session:
        row = verify_key(session, key)
        if row is None:
            raise Unauthorized(f"the key in {HEADER} is unknown or revoked")
        if ROLE_RANK[ApiRole(row.role)] < ROLE_RANK[needed]:
            raise Forbidden(f"this endpoint needs role {needed.value}; the key has {row.role}")
        row.last_used_at = dt.datetime.now(dt.UTC)
        return row


def _require(needed: ApiRole):  # noqa: ANN202 - a FastAPI dependency factory
    def dependency(request: Request) -> ApiKey | None:
        return check_access(request, needed)

    dependency.__name__ = f"require_{needed.value}"
    return Depends(dependency)


ReadAccess = _require(ApiRole.READ)
WriteAccess = _require(ApiRole.WRITE)
AdminAccess = _require(ApiRole.ADMIN)
