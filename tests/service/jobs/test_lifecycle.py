"""Job state transitions (service/jobs/lifecycle.py): the stale sweep and where it runs,
cancel requests, first writer wins."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from service.db import crud
from service.db.session import Database
from service.db.tables import JobStatus, utcnow
from service.errors import Conflict, NotFound
from service.jobs import lifecycle
from service.settings import Settings
from trainer.errors import TrainingCancelled


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Database]:
    url = request.getfixturevalue("postgres_db") if request.param == "postgres" else None
    database = Database(url or settings.database_url)
    yield database
    database.dispose()


def add_job(db: Database, job_id: str, **values: object) -> None:
    with db.session() as session:
        crud.create_job(session, job_id=job_id, kind="retrain", params={}, note=None)
        if values:
            crud.update_job(session, job_id=job_id, **values)


def status(db: Database, job_id: str) -> str:
    with db.session() as session:
        job = crud.get_job(session, job_id=job_id)
        assert job is not None
        return job.status


def test_sweep_requeues_silent_running_jobs_then_fails_them(
    db: Database, settings: Settings
) -> None:
    old = utcnow() - dt.timedelta(seconds=settings.job_stale_s + 1)
    add_job(db, "dead", status=JobStatus.RUNNING.value, heartbeat_at=old, attempts=1)
    add_job(db, "alive", status=JobStatus.RUNNING.value, heartbeat_at=utcnow(), attempts=1)
    add_job(db, "waiting")
    add_job(db, "last", status=JobStatus.RUNNING.value, heartbeat_at=old,
            attempts=lifecycle.MAX_ATTEMPTS)  # fmt: skip
    add_job(db, "asked", status=JobStatus.RUNNING.value, heartbeat_at=old, attempts=1,
            cancel_requested_at=old)  # fmt: skip
    # no Redis and no thread queue in this process: "dead" waits queued in SQL for one
    assert sorted(lifecycle.sweep_stale(db, settings)) == ["asked", "dead", "last"]
    assert [status(db, j) for j in ("dead", "alive", "waiting", "last", "asked")] == [
        "queued", "running", "queued", "failed", "cancelled"]  # fmt: skip
    with db.session() as session:
        dead, last = crud.get_job(session, job_id="dead"), crud.get_job(session, job_id="last")
        assert dead is not None and last is not None
        assert dead.stage == "queued again: attempt 1 of 2 went silent"
        assert dead.heartbeat_at is None and dead.started_at is None and dead.error is None
        assert "attempt 2 of 2, so it is not queued again" in (last.error or "")
    assert lifecycle.sweep_stale(db, settings) == []  # first writer wins: nothing to redo
    # its second run: claimed as attempt 2; silent again, it fails for good
    runner = lifecycle.JobRunner(db, settings, "dead")
    assert runner.claim() and runner.attempt == 2
    with db.session() as session:
        crud.update_job(session, job_id="dead", heartbeat_at=old)
    assert lifecycle.sweep_stale(db, settings) == ["dead"] and status(db, "dead") == "failed"


def test_a_silent_worker_that_comes_back_cannot_touch_the_next_attempt(
    db: Database, settings: Settings
) -> None:
    add_job(db, "j")
    first = lifecycle.JobRunner(db, settings, "j")
    assert first.claim() and first.attempt == 1
    old = utcnow() - dt.timedelta(seconds=settings.job_stale_s + 1)
    with db.session() as session:  # its heartbeats stopped (GIL-starved, paused VM, ...)
        crud.update_job(session, job_id="j", heartbeat_at=old)
    assert lifecycle.sweep_stale(db, settings) == ["j"]
    second = lifecycle.JobRunner(db, settings, "j")
    assert second.claim() and second.attempt == 2
    with pytest.raises(TrainingCancelled, match="no longer the one that runs"):
        first.update(epoch=7)  # the stale worker stops at its next epoch or stage
    with pytest.raises(TrainingCancelled, match="no longer the one that runs"):
        first.check_cancel()
    assert not first.finish(JobStatus.SUCCEEDED)  # and cannot end the job
    second.update(epoch=1)
    second.check_cancel()  # the running attempt goes on
    assert second.finish(JobStatus.SUCCEEDED) and status(db, "j") == "succeeded"


def test_stale_sweep_keeps_its_own_pace(
    db: Database, make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(job_heartbeat_s=3600.0)
    calls: list[int] = []
    monkeypatch.setattr(lifecycle, "sweep_stale", lambda *_: calls.append(1) or [])
    sweep = lifecycle.StaleSweep(db, settings)
    for _ in range(5):  # a poller ticking every 0.1 s sweeps once per heartbeat period
        sweep()
    assert len(calls) == 1


def test_cancel_request(db: Database) -> None:
    add_job(db, "q")
    job, cancelled = lifecycle.request_cancel(db, "q")
    assert cancelled and job.status == "cancelled" and job.cancel_requested_at is not None
    with pytest.raises(Conflict, match="already cancelled"):
        lifecycle.request_cancel(db, "q")
    with pytest.raises(NotFound):
        lifecycle.request_cancel(db, "nope")
    add_job(db, "r", status=JobStatus.RUNNING.value, heartbeat_at=utcnow())
    job, cancelled = lifecycle.request_cancel(db, "r")
    assert not cancelled and job.status == "running" and job.cancel_requested_at is not None


def test_a_job_ended_elsewhere_keeps_its_status(db: Database) -> None:
    add_job(db, "j", status=JobStatus.RUNNING.value, heartbeat_at=utcnow())
    with db.session() as session:
        assert lifecycle.fail(session, "j", "boom")
        assert not lifecycle.withdraw(session, "j", "superseded")
    runner = lifecycle.JobRunner(db, Settings(database_url="sqlite://"), "j")
    assert not runner.finish(JobStatus.SUCCEEDED)
    assert status(db, "j") == "failed"
