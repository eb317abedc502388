"""A hung Redis (a test-owned redis-server, SIGSTOPped for 10 s) never fails or stalls a
recommendation: the cache falls back to the process's own LRU within one socket timeout and
Redis is left alone until it answers again (issue 14). Never touches the shared Redis."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.cache import RedisCache
from service.db.migrate import upgrade
from service.settings import Settings
from tests.service.conftest import start_client
from tests.service.factories import make_bundle

HANG_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


def test_recommendations_keep_answering_while_redis_hangs(
    own_redis: tuple[str, subprocess.Popen], make_settings: Callable[..., Settings]
) -> None:
    url, proc = own_redis
    settings = make_settings(redis_url=url)
    upgrade(settings.database_url)
    make_bundle(settings.model_dir / "m1", seed=1)
    for client in start_client(settings):
        cache = client.app.state.margo.cache
        assert isinstance(cache, RedisCache)
        assert client.get("/users/u1/recommendations").status_code == 200
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            slowest, n, end = 0.0, 0, time.monotonic() + HANG_S
            while time.monotonic() < end:
                t0 = time.perf_counter()
                r = client.get(f"/users/u{n % 7}/recommendations", params={"k": 5})
                slowest = max(slowest, time.perf_counter() - t0)
                assert r.status_code == 200, r.text
                n += 1
            assert cache.down and cache.errors > 0
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert slowest < 2.0, slowest
        assert n > 50  # not one request per socket timeout: Redis was left alone
        time.sleep(cache.cooldown_s)  # the next call probes Redis again
        assert client.get("/users/u1/recommendations").status_code == 200
        assert not cache.down


class FlakyRedis:
    """A dict-backed stand-in for the few Redis calls the cache makes; ``up`` switches it."""

    def __init__(self) -> None:
        self.up, self.deleted = True, []

    def _check(self) -> None:
        if not self.up:
            raise ConnectionError("down")

    def hget(self, key: str, field: str) -> None:
        self._check()

    def delete(self, *keys: str) -> None:
        self._check()
        self.deleted.extend(keys)


def test_invalidations_missed_while_down_are_replayed_on_recovery() -> None:
    redis = FlakyRedis()
    cache = RedisCache(redis, prefix="p:", ttl_s=60, cooldown_s=0.05)
    redis.up = False
    assert cache.get("u1", "f") is None and cache.down
    cache.fallback.set("u1", "f", b"old")
    cache.invalidate_users(["u1"])  # Redis misses it; the fallback drops it at once
    assert cache.fallback.get("u1", "f") is None
    time.sleep(0.06)
    redis.up = True
    assert cache.get("u2", "f") is None and not cache.down
    assert redis.deleted == ["p:rec:u1"]
