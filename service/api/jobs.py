"""Jobs: list, inspect, cancel (a running job stops at its next epoch).

Reads only: a job whose worker died is failed by the stale sweep, which runs on the poller
of every API process and on the workers (service/jobs/lifecycle.py), not here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from service.api.deps import StateDep
from service.api.responses import errors
from service.auth import AdminAccess, KeyInfo, ReadAccess, is_admin
from service.db import crud
from service.db.tables import Job, JobStatus
from service.errors import NotFound
from service.jobs import lifecycle
from service.limits import INT64_MAX, SafeId
from service.schemas import JobOut, JobsOut

router = APIRouter(prefix="/jobs", tags=["retraining"])

JobId = Annotated[SafeId, Path(min_length=1, max_length=64)]


Key = Annotated[KeyInfo | None, ReadAccess]  # the route's own check (cached): who is asking


def job_out(job: Job, key: KeyInfo | None) -> JobOut:
    out = JobOut.model_validate(job)
    out.cancel_requested = job.cancel_requested_at is not None
    if not is_admin(key):  # the snapshot's folder is a server path: admin keys only
        snapshot = out.metrics.get("snapshot")
        if isinstance(snapshot, dict) and "path" in snapshot:
            out.metrics = {**out.metrics, "snapshot": {**snapshot, "path": None}}
    return out


@router.get("", response_model=JobsOut, responses=errors(401, 422), dependencies=[ReadAccess])
def list_jobs(
    state: StateDep,
    key: Key,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
) -> JobsOut:
    with state.db.session() as session:
        rows = crud.list_jobs(
            session, status=status.value if status else None, limit=limit, offset=offset
        )
        return JobsOut(jobs=[job_out(j, key) for j in rows])


@router.get(
    "/{job_id}", response_model=JobOut, responses=errors(401, 404), dependencies=[ReadAccess]
)
def get_job(job_id: JobId, state: StateDep, key: Key) -> JobOut:
    with state.db.session() as session:
        job = crud.get_job(session, job_id=job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}; see GET /jobs")
        return job_out(job, key)


@router.delete(
    "/{job_id}",
    response_model=JobOut,
    status_code=202,
    responses=errors(401, 403, 404, 409),
    dependencies=[AdminAccess],
    summary="Cancel a job: a queued one at once, a running one at its next epoch",
)
def cancel_job(
    job_id: JobId, state: StateDep, response: Response, key: Annotated[KeyInfo, AdminAccess]
) -> JobOut:
    job, cancelled = lifecycle.request_cancel(state.db, job_id)
    if cancelled:
        response.status_code = 200  # done: it never started
        if state.jobs is not None:
            state.jobs.discard(job_id)
    return job_out(job, key)
