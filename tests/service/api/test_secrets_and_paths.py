"""No URL password in any response or error line; server paths for admin keys only; no
redirect built from the Host header (issue 14). SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import cli
from service.db.migrate import upgrade
from service.db.session import Database
from service.db.tables import Job
from service.errors import redact
from service.settings import Settings, get_settings
from tests.service.conftest import make_keys, start_client
from tests.service.factories import make_bundle

SECRET = "s3cret-pw"
DEAD_REDIS = f"redis://:{SECRET}@127.0.0.1:1/0"  # nothing listens on port 1


def test_redact_masks_every_url_password() -> None:
    assert redact(f"at {DEAD_REDIS}: no") == "at redis://:***@127.0.0.1:1/0: no"
    assert redact("redis://user:pw@h:6379/0 and postgresql+psycopg://u:p%40x@db/m") == (
        "redis://user:***@h:6379/0 and postgresql+psycopg://u:***@db/m"
    )
    plain = "redis://h:6379/0, sqlite:///var/margo.db, a:b@c, 10:30"
    assert redact(plain) == plain


@pytest.fixture(params=["sqlite", "postgres"])
def api(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], sqlite_url: str
) -> Iterator[tuple[TestClient, dict[str, str], Settings]]:
    url = request.getfixturevalue("postgres_db") if request.param == "postgres" else sqlite_url
    settings = make_settings(database_url=url, redis_url=DEAD_REDIS)
    upgrade(settings.database_url)
    make_bundle(settings.model_dir / "m1", seed=1)
    keys = make_keys(settings.database_url)
    for client in start_client(settings):
        yield client, keys, settings


def key(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"X-API-Key": keys[role]}


def test_queue_503_does_not_show_the_redis_password(api: Any) -> None:
    client, keys, _ = api
    r = client.post("/retrain", json={}, headers=key(keys, "admin"))
    assert r.status_code == 503 and r.json()["error"] == "queue_unavailable"
    assert SECRET not in r.text and "redis://:***@127.0.0.1:1/0" in r.json()["detail"]


def test_worker_start_up_error_is_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    monkeypatch.setenv("MARGO_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MARGO_REDIS_URL", DEAD_REDIS)
    get_settings.cache_clear()
    try:
        assert cli.main(["worker", "--burst"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert SECRET not in err and "redis://:***@" in err and len(err.strip().splitlines()) == 1


def test_server_paths_are_for_admin_keys_only(api: Any) -> None:
    client, keys, settings = api
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            session.add(Job(id="j1", kind="retrain", status="succeeded",
                            metrics={"snapshot": {"path": "/srv/snapshots/j1", "pairs": 3}},
                            params={}))  # fmt: skip
    finally:
        db.dispose()
    for role in ("read", "write", None):
        headers = key(keys, role) if role else {}
        models = client.get("/models", headers=headers).json()["models"]
        assert models and all(m["bundle_path"] is None for m in models), role
        assert client.get("/models/m1", headers=headers).json()["bundle_path"] is None
        job = client.get("/jobs/j1", headers=headers).json()
        assert job["metrics"]["snapshot"] == {"path": None, "pairs": 3}, role
        listed = client.get("/jobs", headers=headers).json()["jobs"]
        assert listed[0]["metrics"]["snapshot"]["path"] is None
    admin = key(keys, "admin")
    assert client.get("/models/m1", headers=admin).json()["bundle_path"].endswith("m1")
    assert client.get("/jobs/j1", headers=admin).json()["metrics"]["snapshot"]["path"] == (
        "/srv/snapshots/j1"
    )


def test_trailing_slash_redirect_is_relative(api: Any) -> None:
    client, _, _ = api
    r = client.get("/models/?x=1", headers={"host": "evil.example"}, follow_redirects=False)
    assert r.status_code in (307, 308)
    assert r.headers["location"] == "/models?x=1"
    assert client.get("/models/", follow_redirects=True).status_code == 200
