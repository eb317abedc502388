"""Retraining through RQ on the real Redis and PostgreSQL: `margo worker` processes run the
jobs, the API process follows the activation; a worker killed with SIGKILL mid-job has its job
queued again (within job_stale_s) and run by the next worker, failed when that one dies too,
and the active model unchanged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from service.settings import Settings
from tests.service.conftest import start_client
from tests.service.jobs.helpers import FAST, api_key, wait_for, wait_job

MARGO = str(Path(sys.executable).with_name("margo"))
serving = contextmanager(start_client)


@pytest.fixture
def rq_settings(
    job_settings: Callable[..., Settings], postgres_db: str, redis_url: tuple[str, str]
) -> Iterator[Settings]:
    """PostgreSQL + Redis settings with a queue of this test's own; its RQ keys are removed."""
    url, prefix = redis_url
    token = prefix.rstrip(":")
    settings = job_settings(
        database_url=postgres_db, redis_url=url, cache_prefix=prefix, queue_name=f"{token}-retrain"
    )
    yield settings
    import redis

    engine = create_engine(postgres_db)
    with engine.connect() as conn:
        job_ids = [r[0] for r in conn.execute(text("SELECT id FROM jobs"))]
    engine.dispose()
    client = redis.Redis.from_url(url)
    keys = set(client.scan_iter(match=f"*{token}*", count=1000))
    for job_id in job_ids:
        keys |= set(client.scan_iter(match=f"rq:*{job_id}*", count=1000))
    if keys:
        client.delete(*keys)
    for registry in ("rq:workers", "rq:queues"):
        for member in client.smembers(registry):
            if token.encode() in member:
                client.srem(registry, member)
    client.close()


def start_worker(settings: Settings, name: str, *, burst: bool, log: Path) -> subprocess.Popen:
    """A worker process whose output goes to ``log`` (not to a pipe nobody reads while it
    runs: past 64 KiB the worker would block in a write); read back when a test fails."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MARGO_DATABASE_URL": settings.database_url,
        "MARGO_REDIS_URL": str(settings.redis_url),
        "MARGO_QUEUE_NAME": settings.queue_name,
        "MARGO_CACHE_PREFIX": settings.cache_prefix,
        "MARGO_MODEL_DIR": str(settings.model_dir),
        "MARGO_SNAPSHOT_DIR": str(settings.snapshot_dir),
        "MARGO_JOB_HEARTBEAT_S": str(settings.job_heartbeat_s),
        "MARGO_JOB_STALE_S": str(settings.job_stale_s),
        "MARGO_TRAIN_THREADS": "1",
    }
    args = [MARGO, "worker", "--name", name] + (["--burst"] if burst else [])
    with log.open("wb") as out:  # the child holds its own descriptor
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def kill_tree(pid: int) -> None:
    """SIGKILL a worker and its descendants (RQ's work horse runs in a session of its own),
    as when the machine or container of the worker dies."""
    victims, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:  # ppid
                child = int(stat.parent.name)
                victims.append(child)
                frontier.append(child)
    for victim in victims:
        with suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def recs(client: TestClient, user: str) -> tuple[str, list[str]]:
    body = client.get(f"/users/{user}/recommendations", params={"k": 10, "explain": False}).json()
    return body["model_version"], [it["item_id"] for it in body["items"]]


def test_loop_through_rq_on_postgres(rq_settings: Settings, tmp_path: Path) -> None:
    admin, write = api_key(rq_settings, "admin"), api_key(rq_settings, "write")
    with serving(rq_settings) as client:
        version, before = recs(client, "5")
        records = [
            {"user_id": "5", "item_id": before[0], "timestamp": 1_800_000_000},
            {"user_id": "rq-new", "item_id": before[1], "timestamp": 1_800_000_000},
        ]
        r = client.post("/interactions", json={"interactions": records}, headers=write)
        assert r.json()["written"] == 2
        job_id = client.post("/retrain", json={"hyperparameters": FAST}, headers=admin).json()[
            "job_id"
        ]
        r = client.post("/retrain", json={}, headers=admin)
        assert r.status_code == 409 and job_id in r.json()["detail"]
        log = tmp_path / "worker.log"
        worker = start_worker(rq_settings, f"{rq_settings.queue_name}-w1", burst=True, log=log)
        try:
            job = wait_job(client, job_id, admin, timeout=120)
            exited = worker.wait(60)
        except subprocess.TimeoutExpired:
            exited = None
        finally:
            if worker.poll() is None:
                kill_tree(worker.pid)
        printed = log.read_text(errors="replace")[-3000:]
        assert exited == 0, f"the burst worker did not exit cleanly ({exited}):\n{printed}"
        assert job["status"] == "succeeded", (job, printed)
        assert job["metrics"]["gate"]["active_version"] == version
        # the API process follows the activation made by the worker (Redis event / SQL poll)
        new_version = wait_for(
            lambda: recs(client, "5")[0] if recs(client, "5")[0] != version else None,
            what="the API to serve the retrained model",
        )
        assert new_version == job["result_version"]
        assert before[0] not in recs(client, "5")[1]
        assert before[1] not in recs(client, "rq-new")[1]


def test_sigkill_mid_job_requeues_the_job_once_and_keeps_the_model(
    rq_settings: Settings, tmp_path: Path
) -> None:
    admin = api_key(rq_settings, "admin")
    with serving(rq_settings) as client:
        active = client.get("/models").json()["active"]
        job_id = client.post(
            "/retrain",
            json={"hyperparameters": {**FAST, "epochs": 1000, "patience": 1000}},
            headers=admin,
        ).json()["job_id"]

        def job() -> dict:
            return client.get(f"/jobs/{job_id}", headers=admin).json()

        for attempt in (1, 2):
            name, log = f"{rq_settings.queue_name}-w{attempt}", tmp_path / f"w{attempt}.log"
            worker = start_worker(rq_settings, name, burst=False, log=log)
            try:
                wait_for(lambda: job()["epoch"], timeout=120, what=f"attempt {attempt} to train")
            finally:
                kill_tree(worker.pid)
                worker.wait(10)
            killed = time.monotonic()
            if attempt == 1:  # the API's sweep queues it again (on RQ) for the next worker
                again = wait_for(
                    lambda: (j := job())["status"] == "queued" and j,
                    timeout=rq_settings.job_stale_s + 10,
                    what="the sweep to queue the job again",
                )
                assert again["stage"] == "queued again: attempt 1 of 2 went silent", again
                assert again["epoch"] is None and again["error"] is None, again
            else:  # the second death is the last: failed, with the reason
                final = wait_job(client, job_id, admin, timeout=rq_settings.job_stale_s + 10)
                assert final["status"] == "failed", final
                assert "stopped responding" in final["error"], final
                assert "attempt 2 of 2, so it is not queued again" in final["error"], final
            assert time.monotonic() - killed <= rq_settings.job_stale_s + 2
            assert client.get("/models").json()["active"] == active
        assert recs(client, "5")[0] == active
        # the queue takes a new job again
        assert client.post("/retrain", json={}, headers=admin).status_code == 202


def test_a_job_lost_from_redis_does_not_block_retraining(rq_settings: Settings) -> None:
    """Redis restarted without persistence: SQL says queued, RQ has no such job."""
    import redis
    from rq.job import Job as RQJob

    admin = api_key(rq_settings, "admin")
    with serving(rq_settings) as client:
        lost = client.post("/retrain", json={}, headers=admin).json()["job_id"]
        conn = redis.Redis.from_url(str(rq_settings.redis_url))
        try:
            assert RQJob.exists(lost, connection=conn)
            # a young job is spared even when RQ misses it (it may not be handed over yet)
            RQJob.fetch(lost, connection=conn).delete()
            r = client.post("/retrain", json={}, headers=admin)
            assert r.status_code == 409 and lost in r.json()["detail"]
            engine = create_engine(rq_settings.database_url)
            with engine.begin() as db:
                older = "UPDATE jobs SET created_at = created_at - interval '1 hour' WHERE id = :j"
                db.execute(text(older), {"j": lost})
            engine.dispose()
            r = client.post("/retrain", json={}, headers=admin)
            assert r.status_code == 202, r.json()
            job = client.get(f"/jobs/{lost}", headers=admin).json()
            assert job["status"] == "failed" and "lost from the job queue" in job["error"]
        finally:
            conn.close()
