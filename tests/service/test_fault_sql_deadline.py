"""A PostgreSQL that stops answering (TCP open, no reply) is a 503 JSON with Retry-After within
about MARGO_DB_ANSWER_TIMEOUT_S, also for requests that run on pooled connections already
open, and service resumes by itself when it answers again (issue 14; service/db/watchdog.py).
The hang is the test-owned StallingProxy of test_sql_hang.py in front of the shared server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from service.auth import HEADER
from service.db.session import Database, Timeouts
from service.settings import Settings
from tests.service.conftest import make_keys, start_client
from tests.service.factories import make_bundle
from tests.service.test_sql_hang import StallingProxy

BOUND_S = 2.3  # the 2 s answer budget plus a test client's own overhead


@pytest.fixture
def proxy(postgres_db: str) -> Iterator[tuple[StallingProxy, str]]:
    url = make_url(postgres_db)
    p = StallingProxy(url.host or "127.0.0.1", url.port or 5432)
    yield p, url.set(host="127.0.0.1", port=p.port).render_as_string(hide_password=False)
    p.close()


def timed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = call(*args, **kwargs)
    return time.perf_counter() - t0, out


def test_requests_on_open_pooled_connections_get_503_within_the_budget(
    proxy: tuple[StallingProxy, str], postgres_db: str, make_settings: Callable[..., Settings]
) -> None:
    stalling, via_proxy = proxy
    settings = make_settings(database_url=via_proxy, api_key_cache_ttl_s=600,
                             db_answer_timeout_s=2.0, poll_interval_s=5.0)  # fmt: skip
    make_bundle(settings.model_dir / "m1", seed=1)
    keys = make_keys(postgres_db)
    read, write = {HEADER: keys["read"]}, {HEADER: keys["write"]}
    for client in start_client(settings):
        for _ in range(3):  # warm: the keys cached, pooled connections open
            assert client.get("/jobs", headers=read).status_code == 200
        stalling.stall()
        took, r = timed(client.get, "/jobs", headers=read)  # needs SQL, key cached
        assert r.status_code == 503 and r.json()["error"] == "database_unavailable", r.text
        assert r.headers["retry-after"] and took < BOUND_S, took
        body = {"interactions": [{"user_id": "u1", "item_id": "i1"}]}
        took, r = timed(client.post, "/interactions", json=body, headers=write)
        assert r.status_code == 503 and r.headers["retry-after"] and took < BOUND_S, (took, r.text)
        for headers in ({}, read):  # recommendations need no SQL: keyless and cached key
            took, r = timed(client.get, "/users/u1/recommendations", headers=headers)
            assert r.status_code == 200 and took < 1.0, (took, r.text)
        # once the hang is known, SQL requests fail at once instead of queueing behind it
        took, r = timed(client.get, "/jobs", headers=read)
        assert r.status_code == 503 and took < 0.5, (took, r.text)
        stalling.forwarding.set()  # it answers again: service resumes without a restart
        deadline = time.monotonic() + 10
        while (status := client.get("/jobs", headers=read).status_code) != 200:
            assert status == 503 and time.monotonic() < deadline, status
            time.sleep(0.2)


def test_a_slow_statement_on_a_live_server_is_not_cut(postgres_db: str) -> None:
    # the watchdog probes a long wait; the server answers the probe, so the statement runs on
    db = Database(postgres_db, Timeouts(answer_s=0.5, statement_s=10))
    try:
        with db.engine.connect() as conn:
            took, value = timed(conn.execute, text("SELECT pg_sleep(1.5), 7"))
        assert value.one()[1] == 7 and took >= 1.5
    finally:
        db.dispose()


def test_postgres_connections_carry_the_statement_and_lock_limits(postgres_db: str) -> None:
    db = Database(postgres_db, Timeouts(answer_s=2, statement_s=3, lock_s=1.5))
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "3s"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "1500ms"
    finally:
        db.dispose()


def test_bulk_work_keeps_the_full_connect_timeout(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(db_connect_timeout_s=7, db_answer_timeout_s=2.0)
    api, bulk = Timeouts.of(settings), Timeouts.of(settings, statements=False)
    assert (api.connect_s, api.answer_s, api.lock_s) == (2, 2.0, 5.0)
    assert (bulk.connect_s, bulk.answer_s, bulk.lock_s, bulk.statement_s) == (7, 0.0, 0.0, 0.0)
