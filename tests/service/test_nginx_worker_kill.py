"""docker/nginx.conf in front of `margo serve --workers 2` (issue 14): while readers load it, an
API worker is SIGKILLed; nginx sends the GETs whose connection failed before their answer began
again (proxy_next_upstream over a second entry of the same upstream), and the worker that
replaces it takes connections only once its model is loaded (service/app.py), so at most a
response already being sent fails. Needs an ``nginx`` binary (skipped without one, e.g. where
.ci/run has not installed it; MARGO_TEST_REQUIRE_SERVICES=1 turns the skip into a failure)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.db.migrate import upgrade
from tests.service.factories import make_bundle
from tests.service.test_fault_slow_clients import CLI, free_port

CONF = Path(__file__).resolve().parents[2] / "docker" / "nginx.conf"
KILLS, READERS = 2, 8


def workers(server: subprocess.Popen) -> list[int]:
    """The uvicorn worker processes of ``server`` (its children running spawn_main)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server.pid and b"spawn_main" in cmd:
            out.append(int(stat.parent.name))
    return out


def wait_until(ok: object, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            if ok():  # type: ignore[operator]
                return
        except (httpx.HTTPError, OSError):
            pass
        assert time.monotonic() < deadline, f"{what} within {limit_s} s"
        time.sleep(0.2)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """(nginx port, the `margo serve --workers 2` process behind it)."""
    if shutil.which("nginx") is None:
        if os.environ.get("MARGO_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail("nginx is not installed")
        pytest.skip("nginx is not installed")
    url = f"sqlite:///{tmp_path / 'margo.db'}"
    upgrade(url)
    make_bundle(tmp_path / "models" / "m1", seed=1)
    port, nginx_port = free_port(), free_port()
    env = {**os.environ, "MARGO_DATABASE_URL": url, "MARGO_MODEL_DIR": str(tmp_path / "models"),
           "MARGO_REDIS_URL": "", "MARGO_PUBLIC_READS": "true", "MARGO_LOG_REQUESTS": "false",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", CLI, "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    conf = CONF.read_text()
    assert conf.count("server api:8000") == 2  # the retry needs a second entry
    conf = (
        conf.replace("server api:8000", f"server 127.0.0.1:{port}")
        .replace("listen 8080", f"listen 127.0.0.1:{nginx_port}")
        .replace("pid /tmp/nginx.pid;", f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/e.log;")
        .replace("worker_processes auto;", "worker_processes 1;")
    )
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(conf)
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"]
    )
    try:
        ready = f"http://127.0.0.1:{nginx_port}/readyz"
        wait_until(lambda: all(httpx.get(ready, timeout=2).status_code == 200 for _ in range(10))
                   and len(workers(server)) == 2, 120, "nginx and both workers ready")  # fmt: skip
        yield nginx_port, server
    finally:
        nginx.terminate()
        nginx.wait(10)
        server.terminate()
        server.wait(30)
        log.close()


def test_gets_in_flight_on_a_killed_worker_are_sent_again(
    proxied: tuple[int, subprocess.Popen],
) -> None:
    nginx_port, server = proxied
    for _ in range(KILLS):
        wait_until(lambda: len(workers(server)) == 2, 60, "the killed worker replaced")
        stop = time.monotonic() + 4.0
        codes: list[int] = []

        def read(i: int, until: float = stop, out: list[int] = codes) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{nginx_port}", timeout=10) as c:
                while time.monotonic() < until:
                    try:
                        out.append(c.get(f"/users/u{i}/recommendations?k=10").status_code)
                    except httpx.HTTPError:
                        out.append(0)  # the connection dropped (a response mid-stream)

        threads = [threading.Thread(target=read, args=(i,)) for i in range(READERS)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        os.kill(workers(server)[0], signal.SIGKILL)
        for t in threads:
            t.join()
        failed = [c for c in codes if c != 200]
        # a replacement that took requests before its model loaded answered its share 503
        # (up to ~30 a kill here); a response already being sent may still fail
        assert len(codes) > 100 and len(failed) <= 2, (len(codes), failed)
