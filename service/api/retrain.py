"""POST /retrain: record a retraining job and queue it (202), or say which job is in the way."""

from __future__ import annotations

import datetime as dt
import uuid

from fastapi import APIRouter, Request

from service.api.deps import StateDep
from service.api.responses import errors
from service.auth import AdminAccess
from service.db import crud
from service.db.tables import Job, JobStatus, utcnow
from service.errors import Conflict, InvalidRequest
from service.jobs import lifecycle
from service.jobs.queue import JobQueue, QueueUnavailable
from service.schemas import RetrainIn, RetrainOut
from service.state import ServiceState
from trainer.config import InvalidConfig, TrainConfig

router = APIRouter(prefix="/retrain", tags=["retraining"])

JOB_KIND = "retrain"
LOST = (
    "lost from the job queue before a worker took it (Redis was restarted without "
    "persistence or flushed); start a new retrain"
)


def check_params(body: RetrainIn, state: ServiceState) -> None:
    """What the schema cannot see: modalities that exist, and TrainConfig's checks of option
    combinations (torch-free; a problem names its field, e.g. hyperparameters.two_stage)."""
    hp = body.hyperparameters.model_dump(exclude_none=True)
    if "modalities" in hp:
        with state.db.session() as session:
            known = crud.feature_dims(session)
        unknown = [m for m in hp["modalities"] if m not in known]
        if unknown:
            raise InvalidRequest(
                f"hyperparameters.modalities: unknown modality {', '.join(map(repr, unknown))} "
                f"(stored: {', '.join(sorted(known)) or 'none'})"
            )
    try:
        TrainConfig(model=body.model, **{k: v for k, v in hp.items() if k != "modalities"})
    except InvalidConfig as exc:
        raise InvalidRequest(exc.describe(_api_name)) from None


def _api_name(field: str) -> str:
    return field if field == "model" else f"hyperparameters.{field}"


def is_lost(job: Job, jobs: JobQueue, state: ServiceState) -> bool:
    """A queued job the queue no longer holds would block retraining forever. Young jobs are
    spared: another request may have recorded one and not yet handed it to the queue."""
    if job.status != JobStatus.QUEUED.value:
        return False
    created = job.created_at
    if created.tzinfo is None:  # SQLite drops the zone; we store UTC
        created = created.replace(tzinfo=dt.UTC)
    age_s = (utcnow() - created).total_seconds()
    return age_s > state.settings.job_stale_s and not jobs.knows(job.id)


@router.post(
    "",
    status_code=202,
    response_model=RetrainOut,
    responses=errors(401, 403, 409, 422, 503),
    dependencies=[AdminAccess],
    summary="Queue a retraining job on a snapshot of the stored interactions",
)
def retrain(body: RetrainIn, state: StateDep, request: Request) -> RetrainOut:
    check_params(body, state)
    jobs = state.jobs
    if jobs is None:
        raise QueueUnavailable("the job queue is not started")
    jobs.check()  # 503 before anything is written when Redis is down
    lifecycle.sweep_stale(state.db, state.settings)
    job_id = uuid.uuid4().hex
    params = {
        "model": body.model,
        "hyperparameters": body.hyperparameters.model_dump(exclude_none=True),
    }
    with state.db.session() as session:
        running = crud.open_job(session, kind=JOB_KIND)
        if running is not None and is_lost(running, jobs, state):
            lifecycle.fail(session, running.id, LOST)
            running = None
        if running is not None:
            raise Conflict(f"job {running.id} is {running.status}; wait for it or cancel it first")
        crud.create_job(session, job_id=job_id, kind=JOB_KIND, params=params, note=body.note)
    # two requests may both have seen no open job: the older job wins, the other withdraws
    with state.db.session() as session:
        first = crud.open_job(session, kind=JOB_KIND)
        if first is not None and first.id != job_id:
            lifecycle.withdraw(session, job_id, "superseded")
            raise Conflict(f"job {first.id} is {first.status}; wait for it or cancel it first")
    try:
        jobs.submit(job_id)
    except QueueUnavailable as exc:
        with state.db.session() as session:
            lifecycle.fail(session, job_id, exc.detail)
        raise
    return RetrainOut(
        job_id=job_id,
        status=JobStatus.QUEUED,
        status_url=str(request.url_for("get_job", job_id=job_id)),
    )
