"""GET /jobs, GET /jobs/{id}, DELETE /jobs/{id}; a job whose worker died is queued again or, on
its last attempt, failed by the sweep (on the API's poller, not in the GET handlers)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from service.db import crud
from service.db.session import Database
from service.db.tables import JobStatus, utcnow
from service.jobs.lifecycle import MAX_ATTEMPTS
from service.jobs.pipeline import run_job
from service.settings import Settings
from tests.service.conftest import start_client
from tests.service.jobs.helpers import FAST, api_key, wait_for, wait_job


def add_job(client: TestClient, job_id: str, **values: object) -> None:
    with client.app.state.margo.db.session() as session:
        crud.create_job(session, job_id=job_id, kind="retrain", params={"model": "margo"}, note="n")
        if values:
            crud.update_job(session, job_id=job_id, **values)


def test_list_and_get(live: tuple[TestClient, dict, dict]) -> None:
    client, admin, write = live
    add_job(client, "j1")
    add_job(client, "j2", status="failed", error="boom")
    listed = client.get("/jobs", headers=write).json()["jobs"]  # a write key may read
    assert {j["job_id"] for j in listed} == {"j1", "j2"}
    failed = client.get("/jobs", params={"status": "failed"}, headers=admin).json()["jobs"]
    assert [j["job_id"] for j in failed] == ["j2"] and failed[0]["error"] == "boom"
    one = client.get("/jobs/j1", headers=admin).json()
    assert one["status"] == "queued" and one["note"] == "n" and one["params"] == {"model": "margo"}
    assert client.get("/jobs/nope", headers=admin).status_code == 404
    assert client.get("/jobs/j1").status_code == 200  # the tests' settings have public reads
    assert client.get("/jobs", params={"status": "sleeping"}, headers=admin).status_code == 422


def test_cancel_a_queued_job(live: tuple[TestClient, dict, dict]) -> None:
    client, admin, write = live
    add_job(client, "q1")
    assert client.delete("/jobs/q1", headers=write).status_code == 403
    r = client.delete("/jobs/q1", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # a worker that dequeues it afterwards skips it
    state = client.app.state.margo
    assert run_job("q1", state.settings, registry=state.registry) == "skipped"
    assert client.get("/jobs/q1", headers=admin).json()["status"] == "cancelled"
    assert client.delete("/jobs/q1", headers=admin).status_code == 409


def test_a_silent_running_job_on_its_last_attempt_is_failed(
    live: tuple[TestClient, dict, dict],
) -> None:
    client, admin, _ = live
    stale_s = client.app.state.margo.settings.job_stale_s
    old = utcnow() - dt.timedelta(seconds=stale_s + 1)
    add_job(client, "dead", status=JobStatus.RUNNING.value, started_at=old, heartbeat_at=old,
            attempts=MAX_ATTEMPTS)  # fmt: skip
    add_job(client, "alive", status=JobStatus.RUNNING.value, started_at=old, heartbeat_at=utcnow())
    # the poller's sweep (every poll, at most once per job_heartbeat_s) fails it
    job = wait_for(
        lambda: (j := client.get("/jobs/dead", headers=admin).json())["status"] == "failed" and j,
        timeout=5,
        what="the sweep to fail the silent job",
    )
    assert job["status"] == "failed" and "stopped responding" in job["error"]
    assert f"attempt {MAX_ATTEMPTS} of {MAX_ATTEMPTS}" in job["error"]
    assert job["finished_at"] is not None
    assert client.get("/jobs/alive", headers=admin).json()["status"] == "running"
    # the live one still blocks a new retrain
    r = client.post("/retrain", json={}, headers=admin)
    assert r.status_code == 409 and "alive" in r.json()["detail"]


def test_a_silent_running_job_with_attempts_left_runs_again_in_process(
    live: tuple[TestClient, dict, dict],
) -> None:
    """No Redis: the poller's sweep hands it to this process's job thread, which runs it."""
    client, admin, _ = live
    old = utcnow() - dt.timedelta(seconds=client.app.state.margo.settings.job_stale_s + 1)
    add_job(client, "died", status=JobStatus.RUNNING.value, started_at=old, heartbeat_at=old,
            attempts=1, params={"model": "margo", "hyperparameters": FAST})  # fmt: skip
    job = wait_job(client, "died", admin)
    assert job["status"] == "succeeded", job
    with client.app.state.margo.db.session() as session:
        row = crud.get_job(session, job_id="died")
        assert row is not None and row.attempts == 2


def test_reads_do_not_sweep(live: tuple[TestClient, dict, dict]) -> None:
    """GET handlers only read: with the poller stopped, a silent job stays running."""
    client, admin, _ = live
    client.app.state.margo.registry.stop()
    old = utcnow() - dt.timedelta(seconds=client.app.state.margo.settings.job_stale_s + 1)
    add_job(client, "dead", status=JobStatus.RUNNING.value, started_at=old, heartbeat_at=old)
    assert client.get("/jobs/dead", headers=admin).json()["status"] == "running"
    assert client.get("/jobs", headers=admin).json()["jobs"][0]["status"] == "running"


def test_in_process_worker_runs_jobs_left_queued(
    job_settings: Callable[..., Settings],
) -> None:
    settings = job_settings()
    admin = api_key(settings, "admin")
    db = Database(settings.database_url)
    with db.session() as session:  # queued by a process that stopped before running it
        crud.create_job(
            session, job_id="left", kind="retrain", params={"model": "margo"}, note=None
        )
        crud.update_job(session, job_id="left", params={"model": "margo", "hyperparameters": FAST})
    db.dispose()
    with contextmanager(start_client)(settings) as client:
        job = wait_job(client, "left", admin)
        assert job["status"] == "succeeded", job


def test_worker_command_needs_redis(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from service import cli
    from service.settings import get_settings

    monkeypatch.setenv("MARGO_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MARGO_REDIS_URL", "")
    get_settings.cache_clear()
    try:
        assert cli.main(["worker", "--burst"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs MARGO_REDIS_URL" in err[0]
