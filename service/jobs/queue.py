"""Where jobs run: RQ on Redis, or one worker thread inside the API process.

Both take a job id whose row already exists in ``jobs`` (JSON payloads that carry ids, never
pickles); the job function is ``service.jobs.pipeline.run_job`` either way, so statuses,
progress and cancellation behave the same. Both name it by dotted path and import it only
when a job runs (RQ in its work horse, the thread through :func:`job_function`): the job
module trains, so the API process never imports it at start or on a request.
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from service.errors import ServiceError, redact
from service.settings import Settings

if TYPE_CHECKING:
    from service.db.session import Database
    from service.registry import Registry

log = logging.getLogger(__name__)

JOB_FUNCTION = "service.jobs.pipeline.run_job"
"""What the in-process thread runs: (job_id, settings, registry=...) -> terminal status."""
RQ_FUNCTION = "service.jobs.pipeline.rq_job"
"""What RQ workers run: (job_id) -> terminal status; settings from the environment."""
ENCODE_KIND = "encode"
"""The kind of the jobs that encode new items' texts (service/jobs/encode.py)."""
RESULT_TTL_S = 7 * 24 * 3600
"""How long RQ keeps a finished job's record (ours lives in SQL regardless)."""


def job_function(dotted: str = JOB_FUNCTION) -> Callable[..., str]:
    """Import the job function by dotted path, at job time (as RQ does for its workers)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


class QueueUnavailable(ServiceError):
    """The job queue cannot take a job (Redis unreachable); serving is not affected."""

    status_code = 503
    code = "queue_unavailable"


class JobQueue(Protocol):
    kind: str

    def submit(self, job_id: str, attempt: int = 1) -> None: ...
    def check(self) -> None: ...
    def discard(self, job_id: str) -> None: ...
    def knows(self, job_id: str) -> bool: ...
    def close(self) -> None: ...


class RQJobQueue:
    """Jobs go to an RQ queue on Redis; ``margo worker`` processes run them."""

    kind = "rq"

    def __init__(self, client: Any, settings: Settings, name: str | None = None) -> None:
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.client = client
        self.settings = settings
        self.queue = Queue(
            name or settings.queue_name,
            connection=client,
            serializer=JSONSerializer,
            default_timeout=settings.job_timeout_s,
        )

    def check(self) -> None:
        """Raise QueueUnavailable unless Redis answers."""
        import redis

        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise QueueUnavailable(
                f"the job queue (Redis at {redact(self.settings.redis_url or '')}) is "
                f"unreachable: {exc}; "
                "retraining cannot be queued now (recommendations keep working)"
            ) from None

    def submit(self, job_id: str, attempt: int = 1) -> None:
        """Queue the job; a later attempt gets an RQ job of its own (``<id>-<attempt>``): the
        dead worker's RQ job stays in RQ's registries, which its cleanup may still touch."""
        import redis

        self.check()
        try:
            self.queue.enqueue_call(
                RQ_FUNCTION,
                args=(job_id,),
                job_id=job_id if attempt <= 1 else f"{job_id}-{attempt}",
                timeout=self.settings.job_timeout_s,
                result_ttl=RESULT_TTL_S,
                failure_ttl=RESULT_TTL_S,
                description=f"margo job {job_id}",
            )
        except redis.RedisError as exc:
            raise QueueUnavailable(f"could not queue job {job_id} on Redis: {exc}") from None

    def knows(self, job_id: str) -> bool:
        """Whether Redis still holds the job (a Redis restart without persistence, or a flush,
        loses queued jobs while SQL still says queued)."""
        import redis
        from rq.job import Job

        try:
            return bool(Job.exists(job_id, connection=self.client))
        except redis.RedisError:
            return True  # unknown is not lost: never fail a job on a flaky connection

    def discard(self, job_id: str) -> None:
        """Drop a queued job from Redis (best effort: the worker skips it anyway)."""
        import redis

        try:
            self.queue.remove(job_id)
        except redis.RedisError:
            log.warning("could not remove job %s from the RQ queue", job_id)

    def close(self) -> None:
        return None


_LOCAL: dict[tuple[str, str], ThreadJobQueue] = {}
"""This process's thread queues by (database URL, queue name), for :func:`resubmit`."""


class ThreadJobQueue:
    """The embedded default: one daemon thread runs the jobs of this process, one at a time."""

    kind = "in-process"

    def __init__(self, settings: Settings, registry: Registry, name: str | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self._jobs: queue.Queue[str | None] = queue.Queue()
        self.current: str | None = None
        self._key = (registry.db.url, name or settings.queue_name)
        self._thread = threading.Thread(target=self._work, name="margo-jobs", daemon=True)
        self._thread.start()
        for job_id in self._left_queued():
            self._jobs.put(job_id)
        _LOCAL[self._key] = self

    def _left_queued(self) -> list[str]:
        """Jobs queued before this process started (the thread's queue died with the last one)."""
        from service.db import crud

        with self.registry.db.session() as session:
            return crud.queued_job_ids(session)

    def check(self) -> None:
        if not self._thread.is_alive():
            raise QueueUnavailable("the in-process job worker has stopped; restart the service")

    def submit(self, job_id: str, attempt: int = 1) -> None:
        self.check()
        self._jobs.put(job_id)

    def knows(self, job_id: str) -> bool:
        return True  # queued rows are re-read from SQL at start-up: nothing can be lost

    def discard(self, job_id: str) -> None:
        return None  # the thread skips a job that is no longer queued

    def _work(self) -> None:
        # start-up registers the model directory and seeds SQL from its dataset: a job left
        # queued by the last process must not snapshot the database before that is done
        self.registry.wait_ready()
        while True:
            job_id = self._jobs.get()
            if job_id is None:
                return
            self.current = job_id
            try:
                job_function()(job_id, self.settings, registry=self.registry)
            except BaseException:  # keep the thread alive for the next job
                log.exception("in-process job %s crashed", job_id)
            finally:
                self.current = None

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; a running job is asked to stop (cancelled at its next epoch)."""
        from service.db import crud
        from service.db.tables import utcnow

        if _LOCAL.get(self._key) is self:
            del _LOCAL[self._key]
        self._jobs.put(None)
        running = self.current
        if running is not None:  # as a cancel request (lifecycle.py imports this module)
            with self.registry.db.session() as session:
                crud.update_job(session, job_id=running, cancel_requested_at=utcnow())
        self._thread.join(timeout)


def encode_queue_name(settings: Settings) -> str:
    """The RQ queue of encode jobs (service/jobs/encode.py); ``margo worker`` takes it first."""
    return f"{settings.queue_name}-encode"


def make_queue(
    settings: Settings, client: Any | None, registry: Registry, name: str | None = None
) -> JobQueue:
    """Retrain jobs (``name`` None) or another queue's (encode jobs): RQ with Redis, else a
    thread of this process per queue."""
    if settings.redis_url and client is not None:
        return RQJobQueue(client, settings, name)
    return ThreadJobQueue(settings, registry, name)


def resubmit(settings: Settings, db: Database, job_id: str, kind: str, attempt: int) -> None:
    """Hand a job the stale sweep queued again to a worker: RQ when Redis is configured, else
    this process's thread queue of that database. A process with neither (an API process
    before its thread queue starts) leaves it queued in SQL, where a starting thread queue
    finds it. Raises QueueUnavailable when Redis cannot take it."""
    name = encode_queue_name(settings) if kind == ENCODE_KIND else settings.queue_name
    local = _LOCAL.get((db.url, name))
    if local is not None:
        local.submit(job_id, attempt)
    elif settings.redis_url:
        from service.events import redis_client

        client = redis_client(settings.redis_url)
        try:
            RQJobQueue(client, settings, name).submit(job_id, attempt)
        finally:
            client.close()
