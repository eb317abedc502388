"""Fixtures of the service tests: settings on a fresh SQLite file, bundles, apps, API keys,
and the real PostgreSQL and Redis servers (skipped, with the reason, when their URLs are unset).

Tests that are not about access control run with ``public_reads`` on and a client carrying an
admin key; tests/service/api/test_auth.py checks every role on every protected route."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.app import create_app
from service.auth import HEADER, create_api_key
from service.db.migrate import upgrade
from service.db.session import Database
from service.settings import Settings
from tests.service.factories import make_bundle

POSTGRES_ENV = "MARGO_TEST_POSTGRES_URL"
REDIS_ENV = "MARGO_TEST_REDIS_URL"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'margo.db'}"


@pytest.fixture
def make_settings(tmp_path: Path, sqlite_url: str) -> Callable[..., Settings]:
    """Settings for a test: its own SQLite file and model directory, fast polling, public
    reads (keys are the subject of test_auth.py, which turns them off)."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": sqlite_url,
            "model_dir": tmp_path / "models",
            "redis_url": None,
            "poll_interval_s": 0.1,
            "public_reads": True,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    settings = make_settings()
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def bundles(settings: Settings) -> dict[str, Path]:
    """Two bundles in the model directory; m2 is newer, so it is activated at start."""
    root = settings.model_dir
    return {
        "m1": make_bundle(root / "m1", seed=1, created_at="2024-01-01T00:00:00Z"),
        "m2": make_bundle(root / "m2", seed=2, created_at="2024-02-01T00:00:00Z"),
    }


def make_keys(database_url: str) -> dict[str, str]:
    """One fresh API key per role in this database: {"read": ..., "write": ..., "admin": ...}."""
    db = Database(database_url)
    try:
        with db.session() as session:
            return {role: create_api_key(session, role, f"test-{role}") for role in ROLES}
    finally:
        db.dispose()


ROLES = ("read", "write", "admin")


@pytest.fixture
def api_keys(settings: Settings) -> dict[str, str]:
    """A key of each role in the test's database."""
    return make_keys(settings.database_url)


def start_client(settings: Settings, api_key: str | None = None) -> Iterator[TestClient]:
    app = create_app(settings)
    headers = {HEADER: api_key} if api_key else None
    with TestClient(app, raise_server_exceptions=False, headers=headers) as client:
        assert app.state.margo.registry.wait_ready(30), "start-up load did not finish"
        yield client


@pytest.fixture
def client(
    settings: Settings, bundles: dict[str, Path], api_keys: dict[str, str]
) -> Iterator[TestClient]:
    """A started app serving m2 (m1 registered and ready); it sends an admin key."""
    yield from start_client(settings, api_keys["admin"])


@pytest.fixture
def empty_client(settings: Settings, api_keys: dict[str, str]) -> Iterator[TestClient]:
    """A started app with no model at all; it sends an admin key."""
    yield from start_client(settings, api_keys["admin"])


# -- real servers -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for this test run, dropped at the end."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(
            f"{POSTGRES_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1/postgres)"
        )
    admin_url = make_url(base)
    name = f"margo_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """The run's PostgreSQL database, migrated, with every table emptied after the test."""
    upgrade(postgres_url)
    yield postgres_url
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE jobs, interactions, model_versions, items, users, api_keys, "
                "catalogue CASCADE"
            )
        )
    engine.dispose()


@pytest.fixture
def redis_url() -> Iterator[tuple[str, str]]:
    """(Redis URL, a key prefix unique to this test); the prefix's keys are deleted after."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set (e.g. redis://127.0.0.1:6379/0)")
    import redis

    prefix = f"margo-test-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"{REDIS_ENV}={url} does not answer: {exc}")
    yield url, prefix
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
