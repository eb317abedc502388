"""SQL that stops answering never stalls what does not need it, and what needs it answers 503
JSON with Retry-After within about 2 s; margo serve/worker against an unanswering server or an
unsupported URL exit 2 with one line (issue 14). The hang is a test-owned TCP proxy in front of
the shared PostgreSQL that stops forwarding (the shared server is never stopped)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

from service import cli
from service.auth import HEADER
from service.db.migrate import upgrade
from service.settings import Settings, get_settings
from tests.service.conftest import make_keys, start_client
from tests.service.factories import make_bundle
from tests.service.jobs.fixtures import job_settings, tiny_model  # noqa: F401

HANG_S = 10.0


class StallingProxy:
    """Forwards 127.0.0.1:<port> to a server until ``stall()``; then it reads nothing and
    sends nothing (connections stay open: a server that hangs, not one that is down)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.closed = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self.forwarding.clear()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.sockets.append(client)
            self.forwarding.wait()  # a stalled server accepts but never answers
            if self.closed.is_set():
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            self.sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            src.settimeout(0.1)
        except OSError:
            return
        while not self.closed.is_set():
            if not self.forwarding.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.closed.set()
        self.forwarding.set()
        for s in self.sockets:
            s.close()


@pytest.fixture
def proxy(postgres_db: str) -> Iterator[tuple[StallingProxy, str]]:
    url = make_url(postgres_db)
    p = StallingProxy(url.host or "127.0.0.1", url.port or 5432)
    yield p, url.set(host="127.0.0.1", port=p.port).render_as_string(hide_password=False)
    p.close()


def test_a_hung_postgres_stalls_nothing_that_does_not_need_it(
    proxy: tuple[StallingProxy, str], postgres_db: str, make_settings: Callable[..., Settings]
) -> None:
    stalling, via_proxy = proxy
    settings = make_settings(database_url=via_proxy, db_pool_timeout_s=1.5,
                             db_connect_timeout_s=2, api_key_cache_ttl_s=0)  # fmt: skip
    make_bundle(settings.model_dir / "m1", seed=1)
    keys = make_keys(postgres_db)
    for client in start_client(settings):
        assert client.get("/users/u1/recommendations").status_code == 200
        assert client.get("/jobs", headers={HEADER: keys["read"]}).status_code == 200
        stalling.stall()
        end, slowest, n, refused = time.monotonic() + HANG_S, 0.0, 0, 0
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = client.get(f"/users/u{n % 5}/recommendations", params={"k": 5})
            slowest = max(slowest, time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            n += 1
            if n % 20 == 0:  # a keyed request needs SQL for its key: 503 in time
                t0 = time.perf_counter()
                r = client.get("/jobs", headers={HEADER: keys["read"]})
                took = time.perf_counter() - t0
                assert r.status_code == 503 and r.json()["error"] == "database_unavailable", r.text
                assert r.headers["retry-after"] == "2" and took < 2.5, took
                refused += 1
        assert slowest < 2.0 and refused > 0, (slowest, refused)


def test_a_user_with_posts_since_training_is_served_during_a_hang(
    proxy: tuple[StallingProxy, str],
    postgres_db: str,
    job_settings: Callable[..., Settings],  # noqa: F811 (the fixture imported above)
) -> None:
    """Their folded query lives in SQL (another process folded it): while SQL hangs the read
    answers 200 in time with the trained query instead of 503 (found by bench/faults.py)."""
    stalling, via_proxy = proxy
    settings = job_settings(database_url=via_proxy, db_pool_timeout_s=1.5, db_connect_timeout_s=2)
    keys = make_keys(postgres_db)
    for client in start_client(settings):
        model = client.app.state.margo.registry.current
        user, items = model.bundle.user_ids[3], model.bundle.item_ids[:3]
        records = [{"user_id": user, "item_id": i} for i in items]
        write = {HEADER: keys["write"]}
        r = client.post("/interactions", json={"interactions": records}, headers=write)
        assert r.status_code == 201, r.text
        model.users.drop([user])  # not in this process's LRU: the read needs SQL
        stalling.stall()
        for _ in range(3):
            t0 = time.perf_counter()
            r = client.get(f"/users/{user}/recommendations", params={"k": 5})
            assert r.status_code == 200 and r.json()["strategy"] == "personal", r.text
            assert time.perf_counter() - t0 < 2.0
            assert not set(items) & {i["item_id"] for i in r.json()["items"]}  # seen: excluded


def test_serve_against_an_unanswering_server_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = silent.getsockname()[1]
    try:
        monkeypatch.setenv("MARGO_DATABASE_URL", f"postgresql://u:pw9@127.0.0.1:{port}/x")
        monkeypatch.setenv("MARGO_DB_CONNECT_TIMEOUT_S", "1")
        get_settings.cache_clear()
        t0 = time.monotonic()
        assert cli.main(["serve", "--port", "1"]) == 2
        assert time.monotonic() - t0 < 5
    finally:
        get_settings.cache_clear()
        silent.close()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pw9" not in err and "cannot reach" in err, err


def test_worker_against_a_hung_redis_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    upgrade(sqlite_url)
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        monkeypatch.setenv("MARGO_DATABASE_URL", sqlite_url)
        monkeypatch.setenv("MARGO_REDIS_URL", f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        get_settings.cache_clear()
        t0 = time.monotonic()
        assert cli.main(["worker", "--burst"]) == 2
        assert time.monotonic() - t0 < 5
    finally:
        get_settings.cache_clear()
        silent.close()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not answer" in err, err


@pytest.mark.parametrize("url", ["mysql://u:pw9@db/x", "not a url"])
def test_an_unsupported_database_url_is_one_line(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MARGO_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert cli.main(["serve", "--port", "1"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MARGO_DATABASE_URL" in err and "pw9" not in err, err


def test_503s_carry_retry_after(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    upgrade(settings.database_url)
    for client in start_client(settings):  # no model at all: 503 no_active_model
        r = client.get("/users/u1/recommendations")
        assert r.status_code == 503 and r.headers["retry-after"] == "2"


