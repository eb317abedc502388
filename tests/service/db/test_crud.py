"""Queries on both databases: bulk upserts, catalogue watermark, interactions, model states."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from service.db import crud
from service.db.migrate import upgrade
from service.db.session import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Database]:
    if request.param == "sqlite":
        url = sqlite_url
        upgrade(url)
    else:
        url = request.getfixturevalue("postgres_db")
    database = Database(url)
    yield database
    database.dispose()


def items(n: int, title: str = "Item") -> list[dict]:
    return [
        {"external_id": f"i{i}", "title": f"{title} {i}", "categories": ["a", f"c{i % 3}"]}
        for i in range(n)
    ]


def test_bulk_upsert_of_100k_items_is_fast(db: Database) -> None:
    started = time.perf_counter()
    with db.session() as session:
        crud.upsert_items(session, items=items(100_000))
        crud.upsert_users(session, external_ids=[f"u{u}" for u in range(50_000)])
    assert time.perf_counter() - started < 30  # about 2 s on 2 shared cores
    with db.session() as session:
        assert len(crud.item_filter_rows(session)) == 100_000
        assert crud.get_item(session, external_id="i5").categories == ["a", "c2"]


def test_upsert_rewrites_only_changed_items_and_keeps_hidden(db: Database) -> None:
    with db.session() as session:
        crud.upsert_items(session, items=items(50))
        crud.update_item(session, external_id="i3", hidden=True)
        mark = crud.items_watermark(session)
    time.sleep(0.01)
    changed = items(50)
    changed[7]["title"] = "Renamed"
    changed[8]["categories"] = ["b"]
    with db.session() as session:
        crud.upsert_items(session, items=changed)
        since = mark + dt.timedelta(microseconds=1)
        rows = {r[0] for r in crud.item_filter_rows(session, since=since)}
        assert rows == {"i7", "i8"}
        assert crud.get_item(session, external_id="i3").hidden is True
        assert crud.get_item(session, external_id="i8").categories == ["b"]


def test_interactions_create_users_and_refuse_unknown_items(db: Database) -> None:
    with db.session() as session:
        crud.upsert_items(session, items=items(5))
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with db.session() as session:
        assert crud.add_interactions(session, rows=[{"user_id": "x", "item_id": "nope"}]) == [
            "nope"
        ]
        assert crud.add_interactions(session, rows=[{"user_id": "new", "item_id": "i2"}]) == []
    with db.session() as session:
        rows = crud.interactions_since(session, since=before)
    assert [(u, i) for u, i, _ in rows] == [("new", "i2")]


def test_model_states(db: Database) -> None:
    with db.session() as session:
        for v, day in (("a", 1), ("b", 2)):
            crud.save_model(
                session,
                version=v,
                bundle_path=f"/m/{v}",
                created_at=dt.datetime(2024, 1, day, tzinfo=dt.UTC),
            )
    with db.session() as session:
        assert crud.newest_ready(session).version == "b"
        crud.mark_active(session, version="a")
    with db.session() as session:
        crud.mark_active(session, version="b")
    with db.session() as session:
        assert crud.active_version(session) == "b"
        assert crud.get_model(session, version="a").status == "retired"
        crud.mark_failed(session, version="a", reason="broken")
    with db.session() as session:
        assert [m.version for m in crud.list_models(session)] == ["b", "a"]
        assert crud.get_model(session, version="a").note == "broken"


def test_find_users_by_prefix_with_counts(db: Database) -> None:
    with db.session() as session:
        crud.upsert_users(session, external_ids=["a1", "a2", "a_3", "b1", "a%"])
        crud.upsert_items(session, items=items(2))
        crud.ingest_interactions(
            session,
            rows=[
                {"user_id": "a2", "item_id": "i0", "timestamp": 1},
                {"user_id": "a2", "item_id": "i1", "timestamp": 2},
            ],
        )
    with db.session() as session:
        assert crud.find_users(session, prefix="a", limit=10) == [
            ("a%", 0), ("a1", 0), ("a2", 2), ("a_3", 0)
        ]  # fmt: skip
        assert crud.find_users(session, prefix="a_", limit=10) == [("a_3", 0)]
        assert crud.find_users(session, prefix="a%", limit=10) == [("a%", 0)]
        assert crud.find_users(session, prefix="", limit=2) == [("a%", 0), ("a1", 0)]
