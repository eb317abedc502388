"""A job's state transitions, in one place for the routes, the queue and the job itself.

    queued ──claim──> running ──finish──> succeeded | rejected | failed | cancelled
     ▲ │                 │
     │ │ cancel          ├─ heartbeat   every ``job_heartbeat_s`` while it runs
     │ └──> cancelled    ├─ cancel      a request, honoured at the next epoch or stage
     │                   └─ sweep_stale  silent for ``job_stale_s`` (its worker died: SIGKILL,
     └───────────────────────────────── OOM, power loss): queued again and handed to a
                                         worker, up to ``MAX_ATTEMPTS`` runs; then failed

Each transition is one guarded UPDATE (service/db/crud/jobs.py), so the first writer wins: a
job the sweep failed cannot succeed later, a cancelled job is never claimed. A claim counts
the job's attempt, and the runner's updates and finish hold only while its attempt runs: a
worker that was merely silent (not dead) and comes back after its job was queued again stops
at its next epoch or stage, and cannot finish or activate anything. The sweep runs
where time passes anyway: the registry's poller in every API process (``StaleSweep``), a
queue worker at start and before each job; never inside a GET handler. Torch-free: the routes
import this module.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from service.db import crud
from service.db.session import Database
from service.db.tables import Job, JobStatus, utcnow
from service.errors import Conflict, NotFound
from service.settings import Settings
from trainer.errors import TrainingCancelled

if TYPE_CHECKING:
    from trainer.train import EpochReport

log = logging.getLogger(__name__)

TRAIN_PROGRESS = (0.05, 0.9)
"""Share of the job's progress bar before and at the end of training (the rest: I/O)."""


MAX_ATTEMPTS = 2
"""Runs of a job whose worker keeps dying before it is failed: a killed worker or machine is
retried once; a job that kills its worker every time (out of memory) does not loop."""


# -- transitions any process makes ---------------------------------------------------------------
def sweep_stale(db: Database, settings: Settings) -> list[str]:
    """Running jobs whose heartbeat is older than ``job_stale_s``: queued again and handed to
    a worker (``MAX_ATTEMPTS`` runs at most), else failed. Returns their ids."""
    from service.jobs.queue import QueueUnavailable, resubmit

    cutoff = utcnow() - dt.timedelta(seconds=settings.job_stale_s)
    with db.session() as session:
        requeued, ended = crud.sweep_stale_jobs(
            session, older_than=cutoff, max_attempts=MAX_ATTEMPTS
        )
    for job_id in ended:
        log.error("job %s ended: its worker stopped sending heartbeats", job_id)
    for job_id, kind, attempts in requeued:
        try:
            resubmit(settings, db, job_id, kind, attempts + 1)
        except QueueUnavailable as exc:
            with db.session() as session:
                fail(session, job_id, f"its worker died and it could not be queued again: "
                                      f"{exc.detail}")  # fmt: skip
            log.error("job %s failed: its worker died; not queued again: %s", job_id, exc)
            continue
        log.warning(
            "job %s queued again: its worker stopped sending heartbeats (attempt %d of %d "
            "next)", job_id, attempts + 1, MAX_ATTEMPTS,
        )  # fmt: skip
    return [job_id for job_id, _, _ in requeued] + ended


class StaleSweep:
    """:func:`sweep_stale` for a poller that ticks more often than a heartbeat: it runs at
    most once per ``job_heartbeat_s`` (a dead worker is still found within one beat)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._last = float("-inf")

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.settings.job_heartbeat_s:
            self._last = now
            sweep_stale(self.db, self.settings)


def fail(session: Session, job_id: str, error: str) -> bool:
    """An open job -> failed (False when it had ended already)."""
    return crud.finish_job(session, job_id=job_id, status=JobStatus.FAILED, error=error)


def withdraw(session: Session, job_id: str, reason: str) -> bool:
    """An open job -> cancelled without running (e.g. superseded by an older request)."""
    return crud.finish_job(session, job_id=job_id, status=JobStatus.CANCELLED, error=reason)


def request_cancel(db: Database, job_id: str) -> tuple[Job, bool]:
    """``DELETE /jobs/{id}``: a queued job is cancelled now, a running one is asked to stop.

    Returns the job and whether it is cancelled already (it never started). NotFound for an
    unknown job, Conflict for one that has ended.
    """
    with db.session() as session:
        job = crud.get_job(session, job_id=job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}; see GET /jobs")
        if job.status not in crud.OPEN_JOB_STATUSES:
            raise Conflict(f"job {job_id} is already {job.status}")
        # ask first, so a worker claiming the job right now still sees the request
        crud.update_job(session, job_id=job_id, cancel_requested_at=utcnow())
        cancelled = crud.cancel_queued(session, job_id=job_id)
    with db.session() as session:
        job = crud.get_job(session, job_id=job_id)
        assert job is not None
        return job, cancelled


# -- the transitions of the job that runs ------------------------------------------------------
class JobRunner:
    """One job's side of the lifecycle: claim, heartbeat, progress, cancel checks, finish."""

    def __init__(self, db: Database, settings: Settings, job_id: str) -> None:
        self.db = db
        self.settings = settings
        self.job_id = job_id
        self.attempt: int | None = None  # set by claim: updates hold only while it runs
        self._stop = threading.Event()

    def claim(self) -> bool:
        """queued -> running; False when the job was cancelled or taken meanwhile."""
        with self.db.session() as session:
            self.attempt = crud.claim_job(session, job_id=self.job_id)
        return self.attempt is not None

    def _still_mine(self, updated: bool) -> None:
        """An update that changed nothing while this runner holds an attempt: the job was
        queued again (this worker was silent for ``job_stale_s``) or ended elsewhere."""
        if not updated and self.attempt is not None:
            raise TrainingCancelled(
                f"job {self.job_id}: attempt {self.attempt} is no longer the one that runs "
                "(its heartbeats stopped long enough for the job to be queued again)"
            )

    def params(self) -> dict[str, Any]:
        with self.db.session() as session:
            job = crud.get_job(session, job_id=self.job_id)
            assert job is not None
            return dict(job.params or {})

    def update(self, **values: Any) -> None:
        with self.db.session() as session:
            updated = crud.update_job(session, job_id=self.job_id, attempt=self.attempt, **values)
        self._still_mine(updated)

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
        if job is not None and self.attempt is not None:
            self._still_mine(job.attempts == self.attempt and job.status == JobStatus.RUNNING.value)

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
        """running -> a terminal status (False when something else ended the job first)."""
        with self.db.session() as session:
            return self.finish_in(session, status, **values)

    def finish_in(self, session: Session, status: JobStatus, **values: Any) -> bool:
        """:meth:`finish` inside the caller's transaction (to commit with other rows)."""
        return crud.finish_job(
            session, job_id=self.job_id, status=status, attempt=self.attempt, **values
        )

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Stamp ``heartbeat_at`` every ``job_heartbeat_s`` on a thread while the body runs."""
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
                with self.db.session() as session:  # only while its attempt runs
                    crud.update_job(
                        session, job_id=self.job_id, attempt=self.attempt, heartbeat_at=utcnow()
                    )
            except Exception:  # a missed beat is not fatal; the next one may get through
                log.exception("job %s: heartbeat failed", self.job_id)
