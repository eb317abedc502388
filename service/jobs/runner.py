"""One job's life, the same on an RQ worker and on the in-process thread.

claim       queued -> running (a job cancelled while queued is skipped)
heartbeat   a thread stamps ``jobs.heartbeat_at`` every ``job_heartbeat_s``; a job silent
            for ``job_stale_s`` is marked failed by :func:`sweep_stale` (its worker died:
            SIGKILL, OOM, power loss), which the API and workers run regularly
progress    stage, epoch, progress fraction and the latest validation metrics
cancel      ``DELETE /jobs/{id}`` stamps ``cancel_requested_at``; the job raises
            TrainingCancelled at its next epoch (or between stages)
finish      exactly one terminal status, error text for failures
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from service.db import crud
from service.db.session import Database
from service.db.tables import JobStatus, utcnow
from service.settings import Settings
from trainer.errors import TrainingCancelled

if TYPE_CHECKING:
    from service.registry import Registry
    from trainer.train import EpochReport

log = logging.getLogger(__name__)

TRAIN_PROGRESS = (0.05, 0.9)
"""Share of the job's progress bar before and at the end of training (the rest: I/O)."""


def sweep_stale(db: Database, settings: Settings) -> list[str]:
    """Fail running jobs whose heartbeat is older than ``job_stale_s``; returns their ids."""
    cutoff = utcnow() - dt.timedelta(seconds=settings.job_stale_s)
    with db.session() as session:
        stale = crud.fail_stale_jobs(session, older_than=cutoff)
    for job_id in stale:
        log.error("job %s failed: its worker stopped sending heartbeats", job_id)
    return stale


class JobRunner:
    """Writes one job's progress to SQL and tells it when to stop."""

    def __init__(self, db: Database, settings: Settings, job_id: str) -> None:
        self.db = db
        self.settings = settings
        self.job_id = job_id
        self._stop = threading.Event()

    def claim(self) -> bool:
        with self.db.session() as session:
            return crud.claim_job(session, job_id=self.job_id)

    def params(self) -> dict[str, Any]:
        with self.db.session() as session:
            job = crud.get_job(session, job_id=self.job_id)
            assert job is not None
            return dict(job.params or {})

    def update(self, **values: Any) -> None:
        with self.db.session() as session:
            crud.update_job(session, job_id=self.job_id, **values)

    def stage(self, name: str, progress: float | None = None) -> None:
        """Enter a stage; a cancel request is honoured here too."""
        self.check_cancel()
        values: dict[str, Any] = {"stage": name}
        if progress is not None:
            values["progress"] = progress
        self.update(**values)
        log.info("job %s: %s", self.job_id, name)

    def check_cancel(self) -> None:
        with self.db.session() as session:
            job = crud.get_job(session, job_id=self.job_id)
        if job is not None and job.cancel_requested_at is not None:
            raise TrainingCancelled(f"job {self.job_id} cancelled on request")

    def on_epoch(self, report: EpochReport) -> None:
        """trainer.train.fit's callback: record the epoch, then stop if cancelled."""
        lo, hi = TRAIN_PROGRESS
        values: dict[str, Any] = {
            "stage": f"train (stage {report.stage})",
            "epoch": report.epoch,
            "progress": round(lo + (hi - lo) * min(report.progress, 1.0), 4),
        }
        if report.valid is not None:
            values["metrics"] = {
                "valid": {k: float(v) for k, v in report.valid.items()},
                "loss": float(report.loss),
                "best_recall@20": float(report.best),
            }
        self.update(**values)
        self.check_cancel()

    def finish(self, status: JobStatus, **values: Any) -> bool:
        with self.db.session() as session:
            return crud.finish_job(session, job_id=self.job_id, status=status, **values)

    # -- heartbeat -----------------------------------------------------------------------------
    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        thread = threading.Thread(target=self._beat, name=f"margo-job-{self.job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.job_heartbeat_s):
            try:
                with self.db.session() as session:
                    crud.update_job(session, job_id=self.job_id, heartbeat_at=utcnow())
            except Exception:  # a missed beat is not fatal; the next one may get through
                log.exception("job %s: heartbeat failed", self.job_id)


def run_job(job_id: str, settings: Settings, *, registry: Registry | None = None) -> str:
    """Run a queued job to a terminal status and return it.

    ``registry``: the API process's own (in-process worker), so an activation swaps the live
    model at once; a queue worker builds one and other processes follow through SQL/Redis.
    """
    from service.jobs import retrain

    own_db = registry is None
    db = registry.db if registry is not None else Database(settings.database_url)
    try:
        sweep_stale(db, settings)
        runner = JobRunner(db, settings, job_id)
        if not runner.claim():
            log.info("job %s is not queued any more; skipped", job_id)
            return "skipped"
        with runner.heartbeat():
            try:
                outcome = retrain.run(
                    runner, settings, registry or retrain.worker_registry(settings, db)
                )
            except TrainingCancelled as exc:
                runner.finish(JobStatus.CANCELLED, error=str(exc))
                return JobStatus.CANCELLED.value
            except BaseException as exc:
                log.exception("job %s failed", job_id)
                text = f"{type(exc).__name__}: {exc}"
                if not str(exc):
                    text += "\n" + traceback.format_exc(limit=5)
                runner.finish(JobStatus.FAILED, error=text[:4000])
                if not isinstance(exc, Exception):
                    raise
                return JobStatus.FAILED.value
        runner.finish(outcome.status, **outcome.values)
        return outcome.status.value
    finally:
        if own_db:
            db.dispose()


def rq_job(job_id: str) -> str:
    """The function RQ workers run (``margo worker``); settings come from the environment."""
    from service.settings import get_settings

    return run_job(job_id, get_settings())
