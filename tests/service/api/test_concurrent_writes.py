"""Concurrent writers (issue 14): 8 threads posting overlapping interaction batches all succeed,
every record is stored once, and written/duplicates add up, on SQLite and PostgreSQL; also
while the fold-in after each write is slow and the connection pool small (the folds run on a
bounded lane of the pool, so they never leave the requests without a connection)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.db import session as db_session
from service.db.migrate import upgrade
from service.db.session import Database
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
    yield from start(request, make_settings, sqlite_url)


def start(
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


FOLD_S = 0.8
"""How long each fold after a write holds its SQL session in the slow-fold test."""


@pytest.fixture(params=["sqlite", "postgres"])
def slow_fold_client(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[TestClient, list[int]]]:
    """A client whose app has 4 pooled connections (PostgreSQL) and whose fold after each
    write holds a session for FOLD_S; the list counts the folds that ran."""
    monkeypatch.setattr(db_session, "POOL_SIZE", 4)
    monkeypatch.setattr(db_session, "POOL_OVERFLOW", 0)
    folds: list[int] = []

    def slow_fold(_model: object, db: Database, user_ids: list[str], *_: object) -> int:
        with db.session():
            time.sleep(FOLD_S)  # a slow fold holds its connection (history read, upserts)
        folds.append(len(user_ids))
        return len(user_ids)

    monkeypatch.setattr("service.fresh.user_sync.fold_users_on_write", slow_fold)
    for c in start(request, make_settings, sqlite_url):
        yield c, folds


def test_overlapping_batches_from_8_writers_all_succeed(client: TestClient) -> None:
    write_overlapping(client, batches_per_writer=BATCHES)


def test_writers_succeed_while_the_folds_after_their_writes_are_slow(
    slow_fold_client: tuple[TestClient, list[int]],
) -> None:
    client, folds = slow_fold_client
    write_overlapping(client, batches_per_writer=3)
    assert folds  # the folds ran (those that waited past the pool timeout fold on a read)


def write_overlapping(client: TestClient, *, batches_per_writer: int) -> None:
    # a pool of records; every writer posts random, overlapping slices of it (new users too)
    pool = [
        {"user_id": f"cw-{n % 37}", "item_id": f"i{n % 20}", "timestamp": 1_700_000_000 + n}
        for n in range(400)
    ]
    rng = random.Random(0)
    batches = [
        [pool[j] for j in rng.sample(range(len(pool)), 120)]
        for _ in range(WRITERS * batches_per_writer)
    ]
    n0, users0 = count(client, Interaction), count(client, User)
    start = threading.Barrier(WRITERS)

    def writer(w: int) -> list[Any]:
        start.wait()
        return [
            client.post("/interactions", json={"interactions": batches[w * batches_per_writer + b]})
            for b in range(batches_per_writer)
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
