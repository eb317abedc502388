"""API keys on the routes: 401 without a key, 403 with too low a role, public reads, revocation,
open probes, and keys that never reach a log line."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.auth import HEADER, ROLE_RANK, revoke_key
from service.db.migrate import upgrade
from service.db.session import Database
from service.db.tables import ApiKey, ApiRole
from service.log_config import JsonFormatter
from service.settings import Settings
from tests.service.conftest import ROLES, make_keys, start_client
from tests.service.factories import make_bundle
from tests.service.jobs.helpers import wait_for

# (method, path, role needed, JSON body, status once allowed). Routes with side effects a test
# should not start (a retrain, a job deletion) get a request that fails *after* the access check.
ROUTES = [
    ("GET", "/users/u1/recommendations?k=3", "read", None, 200),  # the Starlette fast path
    ("GET", "/users?prefix=u1", "read", None, 200),
    ("GET", "/reliability?modality=image&limit=3", "read", None, 200),
    ("GET", "/reliability/histogram", "read", None, 200),
    ("GET", "/items/i1", "read", None, 200),
    ("GET", "/items/i1/similar?k=3", "read", None, 200),
    ("GET", "/models", "read", None, 200),
    ("GET", "/models/m2", "read", None, 200),
    ("GET", "/jobs", "read", None, 200),
    ("POST", "/interactions", "write", {"interactions": [{"user_id": "u1", "item_id": "i2"}]}, 201),
    ("PATCH", "/items/i1", "write", {"hidden": False}, 200),
    ("POST", "/items", "write", {"items": []}, 422),
    ("POST", "/models/m2/activate", "admin", None, 200),
    ("POST", "/retrain", "admin", {"model": "no-such-model"}, 422),
    ("DELETE", "/jobs/no-such-job", "admin", None, 404),
]
OPEN = ["/healthz", "/readyz", "/metrics"]


Private = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def private(make_settings: Callable[..., Settings]) -> Private:
    """Start an app with keys required for reads (unless overridden); bundle m2 is live."""

    @contextmanager
    def start(**overrides: object) -> Iterator[TestClient]:
        settings = make_settings(**{"public_reads": False, **overrides})
        upgrade(settings.database_url)
        make_bundle(settings.model_dir / "m2", seed=2)
        yield from start_client(settings)

    return start


@pytest.fixture
def app_and_keys(private: Private) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with private() as client:
        yield client, make_keys(client.app.state.margo.settings.database_url)


def call(  # noqa: ANN201
    client: TestClient, method: str, path: str, key: str | None = None, body: object = None
):
    headers = {HEADER: key} if key else {}
    return client.request(method, path, headers=headers, json=body)


def last_used(db: Database, prefix: str) -> object:
    with db.session() as session:
        return session.scalars(select(ApiKey.last_used_at).where(ApiKey.prefix == prefix)).one()


@pytest.mark.parametrize(("method", "path", "needed", "body", "allowed"), ROUTES)
def test_each_role_on_each_protected_route(
    app_and_keys: tuple[TestClient, dict[str, str]],
    method: str,
    path: str,
    needed: str,
    body: object,
    allowed: int,
) -> None:
    client, keys = app_and_keys
    r = call(client, method, path, body=body)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized" and HEADER in r.json()["detail"]
    for role in ROLES:
        r = call(client, method, path, keys[role], body)
        if ROLE_RANK[ApiRole(role)] < ROLE_RANK[ApiRole(needed)]:
            assert r.status_code == 403, (role, r.text)
            out = r.json()
            assert out["error"] == "forbidden" and f"needs role {needed}" in out["detail"]
        else:
            assert r.status_code == allowed, (role, r.text)


@pytest.mark.parametrize(
    "bad", ["nonsense", "mgk_", "mgk_deadbeef_wrongsecret", "mgk_" + "x" * 300, "Bearer mgk_a_b"]
)
def test_unknown_or_malformed_key_is_401(
    app_and_keys: tuple[TestClient, dict[str, str]], bad: str
) -> None:
    client, keys = app_and_keys
    prefix = keys["admin"].split("_")[1]
    for key in (bad, f"mgk_{prefix}_not-the-secret"):  # a real prefix with a wrong secret too
        r = call(client, "GET", "/models", key)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_revoked_key_is_refused(private: Private) -> None:
    with private(api_key_cache_ttl_s=0) as client:  # no per-process trust: SQL every time
        keys = make_keys(client.app.state.margo.settings.database_url)
        assert call(client, "GET", "/models", keys["read"]).status_code == 200
        with client.app.state.margo.db.session() as session:
            revoke_key(session, keys["read"].split("_")[1])
        r = call(client, "GET", "/models", keys["read"])
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
        assert call(client, "GET", "/models", keys["write"]).status_code == 200


def test_revocation_reaches_a_caching_process_within_its_ttl(
    private: Private,
) -> None:
    with private(api_key_cache_ttl_s=3600) as client:
        key = make_keys(client.app.state.margo.settings.database_url)["read"]
        assert call(client, "GET", "/models", key).status_code == 200
        with client.app.state.margo.db.session() as session:
            revoke_key(session, key.split("_")[1])
        # trusted from the cache until the entry expires (here: forced)
        assert call(client, "GET", "/models", key).status_code == 200
        client.app.state.api_keys.clear()
        assert call(client, "GET", "/models", key).status_code == 401


def test_public_reads(private: Private) -> None:
    with private(public_reads=True) as client:
        keys = make_keys(client.app.state.margo.settings.database_url)
        for method, path, needed, body, _ in ROUTES:
            r = call(client, method, path, body=body)
            assert r.status_code == (200 if needed == "read" else 401), (path, r.text)
        # a key that is sent is still checked: a wrong one is refused, a low one is forbidden
        assert call(client, "GET", "/models", "mgk_00000000_nope").status_code == 401
        assert call(client, "POST", "/models/m2/activate", keys["write"]).status_code == 403


def test_probes_and_metrics_are_open(app_and_keys: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = app_and_keys
    for path in OPEN:
        assert client.get(path).status_code == 200, path


def test_last_use_is_recorded_but_not_on_every_request(
    private: Private,
) -> None:
    with private(api_key_cache_ttl_s=0) as client:
        settings = client.app.state.margo.settings
        key = make_keys(settings.database_url)["read"]
        db = Database(settings.database_url)
        prefix = key.split("_")[1]
        try:
            assert last_used(db, prefix) is None
            assert call(client, "GET", "/models", key).status_code == 200
            # written after the answer, on the background lane
            first = wait_for(lambda: last_used(db, prefix), timeout=10, what="last_used_at")
            for _ in range(3):
                assert call(client, "GET", "/models", key).status_code == 200
            # throttled: one write per key per minute and process
            assert last_used(db, prefix) == first
        finally:
            db.dispose()


def test_keys_never_reach_the_logs(
    app_and_keys: tuple[TestClient, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    client, keys = app_and_keys
    caplog.set_level(logging.INFO)
    wrong = "mgk_0badc0de_" + "s" * 32
    call(client, "GET", "/models", keys["admin"])
    call(client, "GET", "/users/u1/recommendations", keys["read"])
    call(client, "POST", "/models/m2/activate", keys["write"])
    call(client, "GET", "/models", wrong)
    lines = [JsonFormatter().format(r) for r in caplog.records]
    access = [line for line in lines if '"logger":"service.access"' in line]
    assert len(access) >= 4
    secrets = [k.split("_", 2)[2] for k in (*keys.values(), wrong)]
    for line in lines:
        assert not any(secret in line for secret in secrets), line
    admin_prefix = keys["admin"].split("_")[1]
    assert any(f'"key_prefix":"{admin_prefix}"' in line for line in access)


def test_no_key_material_in_the_database(app_and_keys: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app_and_keys
    with client.app.state.margo.db.session() as session:
        stored = [(r.prefix, r.key_hash) for r in session.scalars(select(ApiKey))]
    text = repr(stored)
    for key in keys.values():
        assert key.split("_", 2)[2] not in text


# every documented operation, GET or not, is checked here: a new route that forgets its access
# dependency fails this test. Open on purpose: the probes (and /metrics, /docs: undocumented).
OPEN_OPERATIONS = {("GET", "/healthz"), ("GET", "/readyz")}


def documented_operations(client: TestClient) -> list[tuple[str, str]]:
    ops = []
    for path, item in client.app.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        ops += [(method.upper(), concrete) for method in item if method != "parameters"]
    return sorted(ops)


def test_every_documented_operation_needs_the_right_key(
    app_and_keys: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = app_and_keys
    ops = documented_operations(client)
    assert len(ops) >= 10
    unprotected, read_can_write = [], []
    for method, path in ops:
        if (method, path) in OPEN_OPERATIONS or not path.startswith("/") or path == "/":
            continue
        r = call(client, method, path)
        if r.status_code != 401:
            unprotected.append((method, path, r.status_code))
        if method != "GET" and call(client, method, path, keys["read"]).status_code != 403:
            read_can_write.append((method, path))
    assert not unprotected, f"answer without a key: {unprotected}"
    assert not read_can_write, f"a read key passes: {read_can_write}"
