"""Hot swap under load: a real uvicorn server, 32 concurrent connections, five activations.

Every request must succeed and name a version that was live at some moment while it ran:
version ``v_i`` may be served from the start of its activation call until the end of the
next activation call (the swap happens somewhere inside each call).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.auth import HEADER
from service.settings import Settings
from tests.service.factories import make_bundle

CONNECTIONS = 32
ACTIVATIONS = ["b", "c", "a", "b", "c"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    for n, name in enumerate(["a", "b", "c"]):
        make_bundle(
            settings.model_dir / name,
            n_items=3000,
            n_users=200,
            seed=n,
            created_at=f"2024-0{3 - n}-01T00:00:00Z",  # "a" is the newest: live at start
        )
    port = free_port()
    config = uvicorn.Config(
        create_app(settings.model_copy(update={"cache_enabled": False})),
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        http="h11",
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    else:
        pytest.fail("server did not become ready")
    yield base
    server.should_exit = True
    thread.join(timeout=10)


async def load(base: str, admin_key: str) -> tuple[list[tuple[float, float, int, str]], list]:
    results: list[tuple[float, float, int, str]] = []
    windows: list[tuple[float, float, str]] = []
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)

    async def worker(client: httpx.AsyncClient, seed: int) -> None:
        rng = random.Random(seed)
        while not done.is_set():
            params = {"k": rng.choice([5, 20, 50]), "offset": rng.choice([0, 20])}
            t0 = time.monotonic()
            try:
                r = await client.get(f"/users/u{rng.randrange(220)}/recommendations", params=params)
                status, version = r.status_code, r.json().get("model_version", "?")
            except httpx.HTTPError as exc:
                status, version = -1, type(exc).__name__
            results.append((t0, time.monotonic(), status, version))

    async def activator() -> None:
        headers = {HEADER: admin_key}
        async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as admin:
            for version in ACTIVATIONS:
                await asyncio.sleep(0.3)
                t0 = time.monotonic()
                r = await admin.post(f"/models/{version}/activate")
                assert r.status_code == 200, r.text
                windows.append((t0, time.monotonic(), version))
            await asyncio.sleep(0.3)
        done.set()

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        await asyncio.gather(activator(), *(worker(client, s) for s in range(CONNECTIONS)))
    return results, windows


def live_intervals(windows: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """(from, to, version): when each version may have been live."""
    intervals = [(float("-inf"), windows[0][1], "a")]
    for i, (start, _, version) in enumerate(windows):
        end = windows[i + 1][1] if i + 1 < len(windows) else float("inf")
        intervals.append((start, end, version))
    return intervals


def test_concurrent_requests_across_five_activations(server: str, api_keys: dict[str, str]) -> None:
    results, windows = asyncio.run(load(server, api_keys["admin"]))
    failures = [r for r in results if r[2] != 200]
    assert not failures, f"{len(failures)} failed requests, e.g. {failures[:3]}"
    intervals = live_intervals(windows)
    wrong = [
        (t0, t1, v)
        for t0, t1, _, v in results
        if not any(v == iv and t0 <= end and t1 >= start for start, end, iv in intervals)
    ]
    assert not wrong, f"{len(wrong)} responses named a version not live at the time: {wrong[:3]}"
    assert {v for *_, v in results} == {"a", "b", "c"}
    for start, end, version in windows:  # requests were in flight during every swap
        assert any(t0 <= end and t1 >= start for t0, t1, *_ in results), version
    print(f"{len(results)} requests, {len(windows)} activations, no failure")
