"""The encode job: text content of new items -> vectors -> folded into the active model.

``POST /items`` with raw text answers at once; the text is encoded here with the offline
all-MiniLM-L6-v2 (trainer/data/text.py: torch, so on a worker or the in-process job thread,
never in a request), stored in ``item_features`` like a posted vector, and the items are
folded into the active model (service/fresh/). Every API process then serves them after its
next refresh (the Redis event, or its poll). Encode jobs have their own queue
(``<MARGO_QUEUE_NAME>-encode`` on Redis, their own thread in process), so a retrain running
for hours does not hold them up.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from service.db import crud
from service.db.crud import foldin as fsql
from service.db.session import Database
from service.db.tables import JobStatus
from service.fresh import fold
from service.fresh.sync import fold_and_store
from service.jobs import lifecycle
from service.jobs.queue import ENCODE_KIND, QueueUnavailable
from trainer.bundle import ModelBundle, load_bundle

if TYPE_CHECKING:
    from service.jobs.lifecycle import JobRunner
    from service.registry import Registry
    from service.state import ServiceState

log = logging.getLogger(__name__)


def submit_encode(state: ServiceState, item_ids: list[str]) -> str | None:
    """Record and queue an encode job for the items' pending texts; its id, or None when no
    queue takes it now (the next retrain encodes them instead)."""
    queue = getattr(state, "encode_jobs", None)
    if queue is None:
        return None
    job_id = uuid.uuid4().hex
    with state.db.session() as session:
        crud.create_job(
            session, job_id=job_id, kind=ENCODE_KIND, params={"items": item_ids}, note=None
        )
    try:
        queue.submit(job_id)
    except QueueUnavailable as exc:
        with state.db.session() as session:
            lifecycle.fail(session, job_id, exc.detail)
        log.warning("encode job not queued (%s); the next retrain encodes the text", exc.detail)
        return None
    return job_id


def encode_job(job: JobRunner, registry: Registry) -> tuple[JobStatus, dict[str, Any]]:
    """Encode the items' pending texts, fold the items in; the terminal status and values."""
    items = [str(i) for i in job.params().get("items") or []]
    job.stage("encode", 0.1)
    with registry.db.session() as session:
        db_ids = list(fsql.item_ids_by_external(session, external_ids=items).values())
    encoded = encode_pending_texts(registry.db, item_ids=db_ids)
    job.stage("fold", 0.8)
    bundle, version = active_bundle(registry)
    waiting: dict[str, str] = {}
    if bundle is not None and version is not None:
        try:
            with registry.db.session() as session:
                waiting = fold_and_store(session, bundle, version, items)
                fsql.touch_items(session, item_ids=db_ids)  # every poller re-reads them
        except fold.FoldRefused as exc:
            return JobStatus.FAILED, {"error": str(exc), "progress": 1.0}
    registry.items_changed()  # this process at once, the others by event or poll
    folded = [i for i in items if i not in waiting] if bundle is not None else []
    metrics = {"encoded": encoded, "folded": folded, "waiting": waiting, "model": version}
    return JobStatus.SUCCEEDED, {"metrics": metrics, "progress": 1.0, "stage": "done"}


def encode_pending_texts(db: Database, item_ids: list[int] | None = None) -> int:
    """Encode text content stored without a vector (of ``item_ids`` only, when given);
    returns how many were encoded."""
    with db.session() as session:
        pending = list(crud.pending_texts(session))
    if item_ids is not None:
        wanted = set(item_ids)
        pending = [p for p in pending if p[0] in wanted]
    if not pending:
        return 0
    from trainer.data import text  # the text encoder: torch, on the worker only

    vectors = text.encode_texts([t for _, _, t in pending], progress=False)
    rows = [
        (item_id, modality, np.ascontiguousarray(v, np.float32).tobytes(), int(v.shape[0]))
        for (item_id, modality, _), v in zip(pending, vectors, strict=True)
    ]
    with db.session() as session:
        crud.store_vectors(session, rows=rows)
    return len(rows)


def active_bundle(registry: Registry) -> tuple[ModelBundle | None, str | None]:
    """The active model's bundle: the one this process serves, else read (mmap) from disk."""
    with registry.db.session() as session:
        active = crud.active_model(session)
    if active is None:
        return None, None
    live = registry.current
    if live is not None and live.version == active.version:
        return live.bundle, live.version
    # registration verified its checksums; the worker only reads it
    return load_bundle(active.bundle_path, verify=False, mmap=True), active.version
