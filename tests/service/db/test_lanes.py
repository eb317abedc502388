"""Database lanes (service/db/session.py): work after a response (folding a written batch's
users) runs on ``Database.background``, which keeps at most its slots of sessions open, so it
can never hold every pooled connection while requests wait for one (issue 14: bench/faults.py's
8 overlapping writers got 503 pool timeouts that way). On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.db.session import BACKGROUND_SLOTS, Database, Timeouts


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Database]:
    url = request.getfixturevalue("postgres_db") if request.param == "postgres" else sqlite_url
    database = Database(url, Timeouts(pool_s=0.5))
    try:
        yield database
    finally:
        database.dispose()


def test_a_lane_keeps_at_most_its_slots_open_and_gives_up_after_the_wait(db: Database) -> None:
    lane = db.lane(2, wait_s=5.0)
    open_now, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with lane.session() as session:
            session.execute(text("SELECT 1"))
            with lock:
                open_now[0] += 1
                peak[0] = max(peak[0], open_now[0])
            time.sleep(0.1)
            with lock:
                open_now[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2  # all 8 ran, never more than 2 at once

    # both slots held: a third session waits its 0.2 s, then fails as a full pool does
    short = db.lane(2, wait_s=0.2)
    release, held = threading.Event(), threading.Barrier(3)

    def hold() -> None:
        with short.session():
            held.wait()
            release.wait(5)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    held.wait()
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout), short.session():
        pass
    assert 0.15 < time.monotonic() - t0 < 1.0
    # the parent (requests) still gets sessions while the lane is full
    with db.session() as session:
        assert session.execute(text("SELECT 1")).scalar() == 1
    release.set()
    for t in holders:
        t.join()
    with short.session() as session:  # slots are given back, also after an error
        assert session.execute(text("SELECT 1")).scalar() == 1


def test_background_is_one_shared_lane_and_errors_release_its_slot(db: Database) -> None:
    assert db.background is db.background  # one per database: its bound holds per process
    assert db.background.engine is db.engine  # the same pool, not more connections
    for _ in range(BACKGROUND_SLOTS + 2):  # failing sessions must not leak their slots
        with pytest.raises(RuntimeError), db.background.session():
            raise RuntimeError("boom")
    with db.background.session() as session:
        assert session.execute(text("SELECT 1")).scalar() == 1
    with pytest.raises(ValueError, match="at least one slot"):
        db.lane(0)
