"""Jobs: list, inspect, cancel (a running job stops at its next epoch)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from service.api.deps import StateDep
from service.api.responses import errors
from service.auth import AdminAccess, ReadAccess
from service.db import crud
from service.db.tables import Job, JobStatus, utcnow
from service.errors import Conflict, NotFound
from service.jobs.runner import sweep_stale
from service.schemas import JobOut, JobsOut

router = APIRouter(prefix="/jobs", tags=["retraining"])

JobId = Annotated[str, Path(min_length=1, max_length=64)]


def job_out(job: Job) -> JobOut:
    out = JobOut.model_validate(job)
    out.cancel_requested = job.cancel_requested_at is not None
    return out


@router.get("", response_model=JobsOut, responses=errors(401, 422), dependencies=[ReadAccess])
def list_jobs(
    state: StateDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobsOut:
    sweep_stale(state.db, state.settings)
    with state.db.session() as session:
        rows = crud.list_jobs(
            session, status=status.value if status else None, limit=limit, offset=offset
        )
        return JobsOut(jobs=[job_out(j) for j in rows])


@router.get(
    "/{job_id}", response_model=JobOut, responses=errors(401, 404), dependencies=[ReadAccess]
)
def get_job(job_id: JobId, state: StateDep) -> JobOut:
    sweep_stale(state.db, state.settings)
    with state.db.session() as session:
        job = crud.get_job(session, job_id=job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}; see GET /jobs")
        return job_out(job)


@router.delete(
    "/{job_id}",
    response_model=JobOut,
    status_code=202,
    responses=errors(401, 403, 404, 409),
    dependencies=[AdminAccess],
    summary="Cancel a job: a queued one at once, a running one at its next epoch",
)
def cancel_job(job_id: JobId, state: StateDep, response: Response) -> JobOut:
    with state.db.session() as session:
        job = crud.get_job(session, job_id=job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}; see GET /jobs")
        if job.status not in crud.OPEN_JOB_STATUSES:
            raise Conflict(f"job {job_id} is already {job.status}")
        # ask first, so a worker claiming the job right now still sees the request
        crud.update_job(session, job_id=job_id, cancel_requested_at=utcnow())
        if crud.cancel_queued(session, job_id=job_id):
            response.status_code = 200  # done: it never started
    if state.jobs is not None and response.status_code == 200:
        state.jobs.discard(job_id)
    with state.db.session() as session:
        job = crud.get_job(session, job_id=job_id)
        assert job is not None
        return job_out(job)
