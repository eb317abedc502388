"""Jobs: rows and the guarded status updates the job lifecycle is made of.

Every transition is one conditional UPDATE, so two writers (a worker and the stale sweep, a
cancel request and a claim) cannot both win; service/jobs/lifecycle.py names the transitions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.db.tables import Job, JobStatus, utcnow

OPEN_JOB_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def create_job(
    session: Session, *, job_id: str, kind: str, params: dict[str, Any], note: str | None
) -> Job:
    job = Job(id=job_id, kind=kind, status=JobStatus.QUEUED.value, params=params, note=note)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, *, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(
    session: Session, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> Sequence[Job]:
    stmt = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return session.scalars(stmt).all()


def queued_job_ids(session: Session, *, limit: int = 1000) -> list[str]:
    """Ids of queued jobs, oldest first."""
    stmt = (
        select(Job.id)
        .where(Job.status == JobStatus.QUEUED.value)
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def count_jobs_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
    return {str(status): int(count) for status, count in rows}


def open_job(session: Session, *, kind: str) -> Job | None:
    """The queued or running job of ``kind``, if any (the oldest)."""
    stmt = (
        select(Job)
        .where(Job.kind == kind, Job.status.in_(OPEN_JOB_STATUSES))
        .order_by(Job.created_at)
    )
    return session.scalars(stmt).first()


def update_job(session: Session, *, job_id: str, attempt: int | None = None, **values: Any) -> bool:
    """Set ``values``; with ``attempt``, only while the job runs that attempt (a worker whose
    job was queued again after it went silent must not overwrite the next attempt's)."""
    stmt = update(Job).where(Job.id == job_id)
    if attempt is not None:
        stmt = stmt.where(Job.attempts == attempt, Job.status == JobStatus.RUNNING.value)
    return session.execute(stmt.values(updated_at=utcnow(), **values)).rowcount == 1


def claim_job(session: Session, *, job_id: str) -> int | None:
    """queued -> running; the attempt it starts (1 the first time), or None when the job is
    not queued (cancelled, or taken already)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(
            status=JobStatus.RUNNING.value,
            started_at=now,
            heartbeat_at=now,
            updated_at=now,
            attempts=Job.attempts + 1,
        )
    )
    if result.rowcount != 1:
        return None
    return int(session.scalar(select(Job.attempts).where(Job.id == job_id)) or 1)


def finish_job(
    session: Session,
    *,
    job_id: str,
    status: JobStatus,
    attempt: int | None = None,
    **values: Any,
) -> bool:
    """Record a terminal status, unless the job has one already (first writer wins); with
    ``attempt``, only if it is the attempt that runs (see :func:`update_job`)."""
    now = utcnow()
    stmt = update(Job).where(Job.id == job_id, Job.status.in_(OPEN_JOB_STATUSES))
    if attempt is not None:
        stmt = stmt.where(Job.attempts == attempt, Job.status == JobStatus.RUNNING.value)
    result = session.execute(
        stmt.values(status=status.value, finished_at=now, updated_at=now, **values)
    )
    return result.rowcount == 1


def cancel_queued(session: Session, *, job_id: str) -> bool:
    """queued -> cancelled; False when a worker has the job already."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(
            status=JobStatus.CANCELLED.value,
            finished_at=now,
            updated_at=now,
            error="cancelled before it started",
        )
    )
    return result.rowcount == 1


def sweep_stale_jobs(
    session: Session, *, older_than: dt.datetime, max_attempts: int
) -> tuple[list[tuple[str, str, int]], list[str]]:
    """Running jobs whose worker stopped beating before ``older_than``: those with fewer than
    ``max_attempts`` attempts go back to queued, the others fail (one whose cancel was asked
    for ends cancelled). Returns ((id, kind, attempts so far) of the requeued, ids of the
    ended). Each change is guarded by the silence and the attempt it saw, so a heartbeat or
    a claim that comes in between wins."""
    stmt = select(Job.id, Job.kind, Job.attempts, Job.cancel_requested_at).where(
        Job.status == JobStatus.RUNNING.value, Job.heartbeat_at < older_than
    )
    since = older_than.isoformat(timespec="seconds")
    silent = f"its worker stopped responding (no heartbeat since {since}; killed?)"
    requeued: list[tuple[str, str, int]] = []
    ended: list[str] = []
    now = utcnow()
    for job_id, kind, attempts, cancel_at in session.execute(stmt).all():
        still = update(Job).where(
            Job.id == job_id,
            Job.status == JobStatus.RUNNING.value,
            Job.attempts == attempts,
            Job.heartbeat_at < older_than,
        )
        if cancel_at is not None:
            values: dict[str, Any] = {"status": JobStatus.CANCELLED.value, "finished_at": now,
                                      "error": f"cancelled on request; {silent}"}  # fmt: skip
        elif attempts < max_attempts:
            values = {
                "status": JobStatus.QUEUED.value,
                "stage": f"queued again: attempt {attempts} of {max_attempts} went silent",
                "started_at": None,
                "heartbeat_at": None,
                "epoch": None,
                "progress": 0.0,
            }
        else:
            values = {
                "status": JobStatus.FAILED.value,
                "finished_at": now,
                "error": f"{silent}; that was attempt {attempts} of {max_attempts}, so it is "
                "not queued again (does the job kill its worker, e.g. out of memory?)",
            }
        if session.execute(still.values(updated_at=now, **values)).rowcount == 1:
            if values["status"] == JobStatus.QUEUED.value:
                requeued.append((job_id, kind, attempts))
            else:
                ended.append(job_id)
    return requeued, ended
