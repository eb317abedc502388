"""Slow and oversized clients against a live ``margo serve`` (issue 14; service/slow_clients.py):
slow headers get 408 and a closed connection within MARGO_CLIENT_HEADER_TIMEOUT_S, a silent
connection and an idle keep-alive one are closed, a stalled body is cut, huge headers get 431,
and ordinary requests are untouched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from service.auth import HEADER
from service.db.migrate import upgrade
from tests.service.conftest import make_keys

TIMEOUT_S = 1.0
KEYS: dict[str, str] = {}
CLI = "import sys; from service.cli import main; sys.exit(main())"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("slow")
    url = f"sqlite:///{root / 'margo.db'}"
    upgrade(url)
    KEYS.update(make_keys(url))
    port = free_port()
    env = {**os.environ, "MARGO_DATABASE_URL": url, "MARGO_MODEL_DIR": str(root / "models"),
           "MARGO_REDIS_URL": "", "MARGO_CLIENT_HEADER_TIMEOUT_S": str(TIMEOUT_S),
           "MARGO_CLIENT_BODY_TIMEOUT_S": str(TIMEOUT_S), "MARGO_KEEP_ALIVE_TIMEOUT_S": "1",
           "MARGO_MAX_HEADER_BYTES": "4096", "MARGO_LOG_REQUESTS": "false"}  # fmt: skip
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                (root / "serve.log").read_text()
            )
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (seconds from now)."""
    t0, data = time.monotonic(), b""
    sock.settimeout(limit_s)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - t0
        data += chunk


def error_of(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower(), head
    return int(head.split()[1]), json.loads(body)["error"]


def test_slow_headers_get_408_within_the_timeout(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        t0 = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ":  # one byte each 0.1 s
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
            if time.monotonic() - t0 > TIMEOUT_S + 1:
                break
        data, _ = read_until_closed(sock, 5)
        took = time.monotonic() - t0
    assert error_of(data) == (408, "request_timeout")
    assert TIMEOUT_S - 0.2 <= took <= TIMEOUT_S + 1.0, took


def test_a_silent_connection_is_closed(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        data, took = read_until_closed(sock, 5)
    assert data == b"" and took <= TIMEOUT_S + 1.0, took


def test_an_idle_keep_alive_connection_is_closed_after_a_normal_request(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        for _ in range(2):  # a kept-alive connection serves requests as before
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)  # well inside every timeout
            assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "no answer"
        data, took = read_until_closed(sock, 5)  # then idle: closed after keep-alive (1 s)
    assert data == b"" and took <= 2.0, took


def test_a_stalled_body_is_cut(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"POST /interactions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json"
                     b"\r\ncontent-length: 1000\r\n\r\n{\"interactions\": [")  # fmt: skip
        t0 = time.monotonic()
        _, _ = read_until_closed(sock, 5)
        took = time.monotonic() - t0
    assert took <= TIMEOUT_S + 1.0, took


def test_huge_headers_get_431(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 8000 + b"\r\n")
        data, _ = read_until_closed(sock, 5)
    assert error_of(data) == (431, "headers_too_large")


def test_a_large_body_sent_steadily_is_read_whole(server: int) -> None:
    body = json.dumps({"interactions": [{"user_id": f"u{n}", "item_id": "i1"} for n in range(300)]})
    chunks = [body[n : n + 2000].encode() for n in range(0, len(body), 2000)]

    def slow() -> Iterator[bytes]:  # every chunk well inside the body timeout, longer overall
        for chunk in chunks:
            time.sleep(TIMEOUT_S / 3)
            yield chunk

    t0 = time.monotonic()
    r = httpx.post(f"http://127.0.0.1:{server}/interactions", content=slow(), timeout=30,
                   headers={"content-type": "application/json", HEADER: KEYS["write"]})  # fmt: skip
    took = time.monotonic() - t0
    # parsed whole (JSON needs every byte), then refused: no such item in this empty database
    assert r.status_code == 422 and "unknown item 'i1'" in r.json()["detail"], r.text
    assert took > TIMEOUT_S * 1.5, took  # longer than the body timeout, which did not fire
