"""The retraining pipeline one job runs (torch is imported here, inside the job only).

    seed       the active model's dataset into SQL, if it is not there yet (service/jobs/seed.py)
    encode     raw text sent with POST /items -> MiniLM vectors (stored in SQL)
    snapshot   one consistent read of SQL -> a dataset bundle under ``snapshot_dir/<job>``
    train      trainer.train.fit, progress and cancellation through JobRunner.on_epoch
    export     a model bundle under ``model_dir/retrain-<time>-<job>``
    register   verified and recorded (a bundle that fails verification is marked failed)
    gate       both models' validation Recall@20 on the snapshot; activate or reject

Hyper-parameters start from the active model's when it is the same kind of model (so a
retrain is comparable to what serves), then the request's overrides apply.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from service.cache import NullCache
from service.db import crud
from service.db.session import Database
from service.db.tables import JobStatus, utcnow
from service.events import EventBus
from service.jobs import seed
from service.jobs.gate import GATE_METRIC, GateDecision, evaluate_bundle
from service.jobs.runner import TRAIN_PROGRESS, JobRunner
from service.jobs.snapshot import take_snapshot
from service.registry import Registry
from service.settings import Settings

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


def worker_registry(settings: Settings, db: Database) -> Registry:
    """A registry for a queue worker: no response cache; activations announced on Redis."""
    client = None
    if settings.redis_url:
        from service.state import redis_client

        client = redis_client(settings.redis_url)
    return Registry(settings, db, NullCache(), EventBus(client, prefix=settings.cache_prefix))


def encode_pending_texts(db: Database) -> int:
    """Encode text content stored without a vector; returns how many were encoded."""
    from trainer.data import text

    with db.session() as session:
        pending = list(crud.pending_texts(session))
    if not pending:
        return 0
    vectors = text.encode_texts([t for _, _, t in pending], progress=False)
    rows = [
        (item_id, modality, np.ascontiguousarray(v, np.float32).tobytes(), int(v.shape[0]))
        for (item_id, modality, _), v in zip(pending, vectors, strict=True)
    ]
    with db.session() as session:
        crud.store_vectors(session, rows=rows)
    return len(rows)


def seed_active_dataset(db: Database) -> None:
    """Seeding happens at registration; a database whose model was registered before that
    existed gets its history here, before the first snapshot needs it."""
    from trainer.bundle import read_manifest

    with db.session() as session:
        version = crud.active_version(session)
        active = crud.get_model(session, version=version) if version else None
        if active is None:
            return
        try:
            manifest = read_manifest(active.bundle_path)
        except Exception:  # noqa: BLE001 - an unreadable bundle just has nothing to seed
            return
        if seed.needs_seed(session, manifest, active.n_items):
            created = crud.as_utc(active.created_at) or utcnow()
            seed.seed_from_dataset(session, manifest, Path(active.bundle_path), created)


def train_config(kind: str, overrides: dict[str, Any], active: Any, settings: Settings) -> Any:
    """TrainConfig: the active model's hyper-parameters (same kind), then the overrides."""
    import dataclasses

    from trainer.bundle import read_manifest
    from trainer.config import TrainConfig

    values: dict[str, Any] = {}
    if active is not None and active.model_kind == kind:
        try:
            inherited = read_manifest(active.bundle_path).hyperparameters
        except Exception:  # an unreadable old bundle only costs the inherited defaults
            inherited = {}
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        values = {k: v for k, v in inherited.items() if k in names and k not in INHERITED_SKIP}
        if "topk" in values:
            values["topk"] = tuple(values["topk"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.update(model=kind, device="cpu", threads=settings.train_threads)
    return TrainConfig(**values).validate()


def run(runner: JobRunner, settings: Settings, registry: Registry) -> Outcome:
    from trainer.bundle import load_bundle
    from trainer.data.dataset import load_dataset
    from trainer.errors import BundleError
    from trainer.export import export_model
    from trainer.train import fit

    db = runner.db
    params = runner.params()
    kind = str(params.get("model") or "margo")
    job_id = runner.job_id
    t0 = time.perf_counter()

    # -- the active model's dataset into SQL (if not yet), new text content, the snapshot -----
    runner.stage("seed", 0.005)
    seed_active_dataset(db)
    runner.stage("encode", 0.01)
    encoded = encode_pending_texts(db)
    runner.stage("snapshot", 0.02)
    snap = take_snapshot(db, settings.snapshot_dir / job_id)
    data = load_dataset(snap.path, params.get("hyperparameters", {}).get("modalities"))
    with db.session() as session:
        active_version = crud.active_version(session)
        active = crud.get_model(session, version=active_version) if active_version else None
    cfg = train_config(kind, params.get("hyperparameters") or {}, active, settings)
    snapshot_info = {
        "users": snap.n_users,
        "items": snap.n_items,
        "pairs": snap.n_pairs,
        "valid_pairs": int(len(data.valid)),
        "modalities": snap.modalities,
        "items_missing_vectors": snap.missing_vectors,
        "texts_encoded": encoded,
        "path": str(snap.path),
    }
    runner.update(
        params={**params, "effective": cfg.to_dict()}, metrics={"snapshot": snapshot_info}
    )

    # -- train -----------------------------------------------------------------------------
    runner.stage("train", TRAIN_PROGRESS[0])
    result = fit(data, cfg, callback=runner.on_epoch, progress=False)

    # -- export and register ---------------------------------------------------------------
    runner.stage("export", TRAIN_PROGRESS[1])
    version = f"retrain-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{job_id[:8]}"
    path = export_model(result, data, cfg, settings.model_dir / version)
    runner.stage("register", 0.93)
    try:
        row = registry.register(path, build_index=True)
    except BundleError as exc:
        raise BundleError(f"model {version} failed verification and stays inactive: {exc}") from exc
    runner.update(result_version=row.version)

    # -- the gate: both models on the same snapshot ------------------------------------------
    runner.stage("gate", 0.96)
    new_metrics = evaluate_bundle(load_bundle(path, verify=False, mmap=True), data)
    active_metrics = None
    if active is not None:
        active_metrics = evaluate_bundle(load_bundle(active.bundle_path, mmap=True), data)
    decision = GateDecision(
        new=new_metrics[GATE_METRIC],
        active=None if active_metrics is None else active_metrics[GATE_METRIC],
        tolerance=settings.retrain_tolerance,
    )
    gate = {
        "metric": GATE_METRIC,
        "new": decision.new,
        "active": decision.active,
        "active_version": active.version if active is not None else None,
        "threshold": decision.threshold,
        "tolerance": decision.tolerance,
        "passed": decision.passed,
    }
    metrics = {
        "snapshot": snapshot_info,
        "valid": {k: float(v) for k, v in result.valid.items()},
        "test": {k: float(v) for k, v in result.test.items()},
        "gate": gate,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info("job %s: %s", job_id, decision.explain())
    values = {"metrics": metrics, "result_version": version, "progress": 1.0, "stage": "done"}
    if not decision.passed:
        with db.session() as session:
            crud.mark_rejected(session, version=version, reason=decision.explain())
        return Outcome(JobStatus.REJECTED, {**values, "error": decision.explain()})

    def succeed(session: Session) -> None:
        # the job's status and the activation commit together: a job the stale sweep (or
        # anything else) ended meanwhile must not change what serves
        if not crud.finish_job(session, job_id=job_id, status=JobStatus.SUCCEEDED, **values):
            raise JobEnded(
                f"job {job_id} was ended before its model could be activated; "
                f"{version} stays ready, not active"
            )

    registry.activate(version, guard=succeed)
    return Outcome(JobStatus.SUCCEEDED, values)  # recorded already: run_job's finish is a no-op
