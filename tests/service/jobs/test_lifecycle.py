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


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
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


def test_sweep_fails_only_silent_running_jobs(db: Database, settings: Settings) -> None:
    old = utcnow() - dt.timedelta(seconds=settings.job_stale_s + 1)
    add_job(db, "dead", status=JobStatus.RUNNING.value, heartbeat_at=old)
    add_job(db, "alive", status=JobStatus.RUNNING.value, heartbeat_at=utcnow())
    add_job(db, "waiting")
    assert lifecycle.sweep_stale(db, settings) == ["dead"]
    assert [status(db, j) for j in ("dead", "alive", "waiting")] == ["failed", "running", "queued"]
    assert lifecycle.sweep_stale(db, settings) == []  # first writer wins: nothing to redo


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
