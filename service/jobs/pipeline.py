"""The retrain job: a list of named steps, each handing the verified object to the next.

Loaded by dotted path (``JOB_FUNCTION`` in service/jobs/queue.py) on a queue worker or the
in-process job thread when a job runs, never by the API at start or on a request: it is the
one service module that trains, and it imports the torch-using trainer inside its steps.

    run_job     claim -> heartbeat -> retrain -> exactly one terminal status
    retrain
      1 prepare   the active model's dataset into SQL if missing; new texts -> vectors
      2 snapshot  SQL -> dataset bundle, written once; its validated Dataset is used as is
      3 train     trainer.train.fit; progress and cancellation through JobRunner.on_epoch
      4 export    a model bundle under ``model_dir/retrain-<time>-<job>``
      5 register  verified (hashed) once -> Registered(row, bundle, index); a bundle that
                  fails verification is recorded failed and the job fails
      6 gate      both models' validation Recall@20 on the snapshot
      7 activate  the verified bundle goes live, committed with the job's success; or the
                  version is rejected

Hyper-parameters start from the active model's when it is the same kind of model (so a
retrain is comparable to what serves), then the request's overrides apply.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from service.cache import NullCache
from service.db import crud, seed
from service.db.session import Database
from service.db.snapshot import Snapshot, take_snapshot
from service.db.tables import JobStatus, ModelVersion
from service.events import EventBus, redis_client
from service.jobs.encode import ENCODE_KIND, encode_job, encode_pending_texts
from service.jobs.gate import GATE_METRIC, GateDecision, evaluate_bundle
from service.jobs.lifecycle import TRAIN_PROGRESS, JobRunner, sweep_stale
from service.registry import Registered, Registry
from service.settings import Settings
from trainer.bundle import ModelBundle, load_bundle, read_manifest
from trainer.errors import BundleError, TrainingCancelled

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.data.dataset import Dataset
    from trainer.train import FitResult

log = logging.getLogger(__name__)

INHERITED_SKIP = {"device", "threads", "modalities", "model"}
"""Active-model hyper-parameters a retrain does not inherit (they describe the machine or
the old dataset)."""


class JobEnded(Exception):
    """The job got a terminal status from elsewhere (the stale sweep) while it ran."""


@dataclass
class Outcome:
    status: JobStatus
    values: dict[str, Any] = field(default_factory=dict)


# -- the job ---------------------------------------------------------------------------------
def run_job(job_id: str, settings: Settings, *, registry: Registry | None = None) -> str:
    """Run a queued job to a terminal status and return it (``skipped``: not queued any more).

    ``registry``: the API process's own (in-process worker), so an activation swaps the live
    model at once; a queue worker builds one and other processes follow through SQL/Redis.
    """
    own = registry is None
    registry = registry or worker_registry(settings)
    try:
        sweep_stale(registry.db, settings)
        job = JobRunner(registry.db, settings, job_id)
        if not job.claim():
            log.info("job %s is not queued any more; skipped", job_id)
            return "skipped"
        with registry.db.session() as session:
            row = crud.get_job(session, job_id=job_id)
            kind = row.kind if row is not None else None
        with job.heartbeat():
            try:
                if kind == ENCODE_KIND:  # text of new items -> vectors -> fold-in
                    outcome = Outcome(*encode_job(job, registry))
                else:
                    outcome = retrain(job, settings, registry)
            except TrainingCancelled as exc:
                job.finish(JobStatus.CANCELLED, error=str(exc))
                return JobStatus.CANCELLED.value
            except BaseException as exc:
                log.exception("job %s failed", job_id)
                text = f"{type(exc).__name__}: {exc}"
                if not str(exc):
                    text += "\n" + traceback.format_exc(limit=5)
                job.finish(JobStatus.FAILED, error=text[:4000])
                if not isinstance(exc, Exception):
                    raise
                return JobStatus.FAILED.value
        job.finish(outcome.status, **outcome.values)  # a no-op after an activation
        return outcome.status.value
    finally:
        if own:
            registry.db.dispose()


def rq_job(job_id: str) -> str:
    """The function RQ workers run (``margo worker``); settings come from the environment."""
    from service.settings import get_settings

    return run_job(job_id, get_settings())


def worker_registry(settings: Settings) -> Registry:
    """A queue worker's registry: no response cache; activations announced on Redis."""
    client = redis_client(settings.redis_url) if settings.redis_url else None
    events = EventBus(client, prefix=settings.cache_prefix)
    db = Database.of(settings, statements=False)  # snapshots may rightly run long
    return Registry(settings, db, NullCache(), events)


def retrain(job: JobRunner, settings: Settings, registry: Registry) -> Outcome:
    """The steps, in order; each returns what the next one needs."""
    t0 = time.perf_counter()
    params = job.params()
    hyper = dict(params.get("hyperparameters") or {})

    encoded = prepare(job, registry.db)
    snap = snapshot(job, settings)
    with registry.db.session() as session:  # what serves now: inherited settings, the gate
        active = crud.active_model(session)
    chosen = hyper.get("modalities")
    data = snap.data if chosen is None else snap.data.select_modalities(list(chosen))
    cfg = train_config(str(params.get("model") or "margo"), hyper, active, settings)
    info = snapshot_info(snap, data, encoded)
    job.update(params={**params, "effective": cfg.to_dict()}, metrics={"snapshot": info})

    result = train(job, data, cfg)
    path = export(job, result, data, cfg, settings)
    new = register(job, registry, path)
    decision, gate_info = gate(job, new.bundle, active, registry, data, settings)

    version = new.row.version
    values = {
        "metrics": {
            "snapshot": info,
            "valid": {k: float(v) for k, v in result.valid.items()},
            "test": {k: float(v) for k, v in result.test.items()},
            "gate": gate_info,
            "seconds": round(time.perf_counter() - t0, 3),
        },
        "result_version": version,
        "progress": 1.0,
        "stage": "done",
    }
    log.info("job %s: %s", job.job_id, decision.explain())
    if not decision.passed:
        return reject(registry, version, decision, values)
    return activate(job, registry, new, values)


# -- the steps -------------------------------------------------------------------------------
def prepare(job: JobRunner, db: Database) -> int:
    """Seed SQL from the active model's dataset if it lacks it; encode new texts. Returns
    how many texts were encoded."""
    job.stage("seed", 0.005)
    seed.seed_active_model(db)
    job.stage("encode", 0.01)
    return encode_pending_texts(db)


def snapshot(job: JobRunner, settings: Settings) -> Snapshot:
    """One consistent read of SQL, written once as a dataset bundle under ``snapshot_dir``."""
    job.stage("snapshot", 0.02)
    return take_snapshot(job.db, settings.snapshot_dir / job.job_id)


def train(job: JobRunner, data: Dataset, cfg: TrainConfig) -> FitResult:
    from trainer.train import fit  # torch: on the worker, at job time only

    job.stage("train", TRAIN_PROGRESS[0])
    return fit(data, cfg, callback=job.on_epoch, progress=False)


def export(
    job: JobRunner, result: FitResult, data: Dataset, cfg: TrainConfig, settings: Settings
) -> Path:
    import trainer.export  # read at call time: tests swap export_model for a corrupting one

    job.stage("export", TRAIN_PROGRESS[1])
    version = f"retrain-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{job.job_id[:8]}"
    return trainer.export.export_model(result, data, cfg, settings.model_dir / version)


def register(job: JobRunner, registry: Registry, path: Path) -> Registered:
    job.stage("register", 0.93)
    try:
        # the items came from SQL: their rows (metadata, edits made while training) stay
        new = registry.register_verified(path, build_index=True, items_from_sql=True)
    except BundleError as exc:
        raise BundleError(
            f"model {path.name} failed verification and stays inactive: {exc}"
        ) from exc
    job.update(result_version=new.row.version)
    return new


def gate(
    job: JobRunner,
    new: ModelBundle,
    active: ModelVersion | None,
    registry: Registry,
    data: Dataset,
    settings: Settings,
) -> tuple[GateDecision, dict[str, Any]]:
    """Both models scored on the snapshot's validation pairs; the decision and its record."""
    job.stage("gate", 0.96)
    new_score = evaluate_bundle(new, data)[GATE_METRIC]
    active_score = None
    if active is not None:
        active_score = evaluate_bundle(active_bundle(active, registry), data)[GATE_METRIC]
    decision = GateDecision(
        new=new_score, active=active_score, tolerance=settings.retrain_tolerance
    )
    return decision, {
        "metric": GATE_METRIC,
        "new": decision.new,
        "active": decision.active,
        "active_version": active.version if active is not None else None,
        "threshold": decision.threshold,
        "tolerance": decision.tolerance,
        "passed": decision.passed,
    }


def reject(
    registry: Registry, version: str, decision: GateDecision, values: dict[str, Any]
) -> Outcome:
    with registry.db.session() as session:
        crud.mark_rejected(session, version=version, reason=decision.explain())
    return Outcome(JobStatus.REJECTED, {**values, "error": decision.explain()})


def activate(
    job: JobRunner, registry: Registry, new: Registered, values: dict[str, Any]
) -> Outcome:
    """The verified bundle goes live; the job's success commits in the same transaction."""

    def succeed(session: Session) -> None:
        # a job the stale sweep (or anything else) ended meanwhile must not change what serves
        if not job.finish_in(session, JobStatus.SUCCEEDED, **values):
            raise JobEnded(
                f"job {job.job_id} was ended before its model could be activated; "
                f"{new.row.version} stays ready, not active"
            )

    registry.activate(new.row.version, guard=succeed, verified=new)
    return Outcome(JobStatus.SUCCEEDED, values)


# -- helpers of the steps --------------------------------------------------------------------
def train_config(
    kind: str, overrides: dict[str, Any], active: ModelVersion | None, settings: Settings
) -> TrainConfig:
    """TrainConfig: the active model's hyper-parameters (same kind), then the overrides."""
    from trainer.config import TrainConfig

    values: dict[str, Any] = {}
    if active is not None and active.model_kind == kind:
        try:
            inherited = read_manifest(active.bundle_path).hyperparameters
        except Exception:  # an unreadable old bundle only costs the inherited defaults
            inherited = {}
        names = set(TrainConfig.model_fields)
        values = {k: v for k, v in inherited.items() if k in names and k not in INHERITED_SKIP}
        if "topk" in values:
            values["topk"] = tuple(values["topk"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.update(model=kind, device="cpu", threads=settings.train_threads)
    return TrainConfig(**values).validate()


def snapshot_info(snap: Snapshot, data: Dataset, encoded: int) -> dict[str, Any]:
    return {
        "users": snap.n_users,
        "items": snap.n_items,
        "pairs": snap.n_pairs,
        "valid_pairs": int(len(data.valid)),
        "modalities": snap.modalities,
        "items_missing_vectors": snap.missing_vectors,
        "texts_encoded": encoded,
        "path": str(snap.path),
        "warnings": snap.warnings,  # rows skipped, each named (service/db/snapshot.py)
    }


def active_bundle(active: ModelVersion, registry: Registry) -> ModelBundle:
    """The active model's bundle: the one this process serves (verified when it was loaded),
    else read and verified now."""
    live = registry.current
    if live is not None and live.version == active.version:
        return live.bundle
    return load_bundle(active.bundle_path, mmap=True)
