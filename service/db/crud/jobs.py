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


def update_job(session: Session, *, job_id: str, **values: Any) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow(), **values))


def claim_job(session: Session, *, job_id: str) -> bool:
    """queued -> running; False when the job is not queued (cancelled, or taken already)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(status=JobStatus.RUNNING.value, started_at=now, heartbeat_at=now, updated_at=now)
    )
    return result.rowcount == 1


def finish_job(session: Session, *, job_id: str, status: JobStatus, **values: Any) -> bool:
    """Record a terminal status, unless the job has one already (first writer wins)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(OPEN_JOB_STATUSES))
        .values(status=status.value, finished_at=now, updated_at=now, **values)
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


def fail_stale_jobs(session: Session, *, older_than: dt.datetime) -> list[str]:
    """Mark running jobs whose worker stopped beating before ``older_than`` failed."""
    stmt = select(Job.id).where(
        Job.status == JobStatus.RUNNING.value, Job.heartbeat_at < older_than
    )
    stale = list(session.scalars(stmt))
    for job_id in stale:
        finish_job(
            session,
            job_id=job_id,
            status=JobStatus.FAILED,
            error="the worker stopped responding (no heartbeat since "
            f"{older_than.isoformat(timespec='seconds')}); it was probably killed",
        )
    return stale
