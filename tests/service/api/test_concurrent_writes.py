"""Concurrent writers (issue 14): 8 threads posting overlapping interaction batches all succeed,
every record is stored once, and written/duplicates add up, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.db.migrate import upgrade
from service.db.tables import Interaction, User
from service.settings import Settings
from tests.service.conftest import make_keys, start_client
from tests.service.factories import make_bundle

WRITERS = 8
BATCHES = 6


@pytest.fixture(params=["sqlite", "postgres"])
def client(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], sqlite_url: str
) -> Iterator[TestClient]:
    url = request.getfixturevalue("postgres_db") if request.param == "postgres" else sqlite_url
    settings = make_settings(database_url=url)
    upgrade(settings.database_url)
    make_bundle(settings.model_dir / "m1", seed=1)
    keys = make_keys(settings.database_url)
    for c in start_client(settings, keys["write"]):
        r = c.post("/items", json={"items": [{"item_id": f"i{n}"} for n in range(20)]})
        assert r.status_code == 200, r.text
        yield c


def count(client: TestClient, table: type) -> int:
    with client.app.state.margo.db.session() as session:
        return session.scalar(select(func.count()).select_from(table))


def test_overlapping_batches_from_8_writers_all_succeed(client: TestClient) -> None:
    # a pool of records; every writer posts random, overlapping slices of it (new users too)
    pool = [
        {"user_id": f"cw-{n % 37}", "item_id": f"i{n % 20}", "timestamp": 1_700_000_000 + n}
        for n in range(400)
    ]
    rng = random.Random(0)
    batches = [
        [pool[j] for j in rng.sample(range(len(pool)), 120)]
        for _ in range(WRITERS * BATCHES)
    ]
    n0, users0 = count(client, Interaction), count(client, User)
    start = threading.Barrier(WRITERS)

    def writer(w: int) -> list[Any]:
        start.wait()
        return [
            client.post("/interactions", json={"interactions": batches[w * BATCHES + b]})
            for b in range(BATCHES)
        ]

    with ThreadPoolExecutor(WRITERS) as pool_:
        responses = [r for rs in pool_.map(writer, range(WRITERS)) for r in rs]
    failed = [(r.status_code, r.text) for r in responses if r.status_code != 201]
    assert not failed, failed[:3]
    bodies = [r.json() for r in responses]
    sent = {(r["user_id"], r["item_id"], r["timestamp"]) for b in batches for r in b}
    assert sum(b["written"] for b in bodies) == len(sent)
    assert sum(b["duplicates"] for b in bodies) == sum(len(b) for b in batches) - len(sent)
    assert all(b["accepted"] == 120 for b in bodies)
    assert count(client, Interaction) == n0 + len(sent)
    assert count(client, User) == users0 + len({u for u, _, _ in sent})
