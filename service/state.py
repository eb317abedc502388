"""What one API process holds: settings, database, cache, events, the model registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from service.cache import LRUCache, NullCache, RedisCache, ResponseCache
from service.db.migrate import check_schema
from service.db.session import Database
from service.events import EventBus, redis_client
from service.index import set_faiss_threads
from service.ranking import RankingConfig
from service.registry import Registry
from service.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["ServiceState", "make_cache", "redis_client"]


def make_cache(settings: Settings, client: Any | None) -> ResponseCache:
    if not settings.cache_enabled:
        return NullCache()
    if client is not None:
        return RedisCache(client, prefix=settings.cache_prefix, ttl_s=settings.cache_ttl_s)
    return LRUCache(settings.cache_size)


@dataclass
class ServiceState:
    settings: Settings
    db: Database
    registry: Registry
    cache: ResponseCache
    events: EventBus
    ranking: RankingConfig
    redis: Any | None = None
    jobs: Any | None = None  # service.jobs.queue.JobQueue, started by ``start_jobs``
    encode_jobs: Any | None = None  # the encode jobs' queue (service/jobs/encode.py)

    @classmethod
    def open(cls, settings: Settings) -> ServiceState:
        """Connect to SQL (refusing an un-migrated schema) and Redis; nothing starts yet."""
        db = Database.of(settings)  # connect, statement and pool timeouts
        try:
            check_schema(db.engine)
        except Exception:
            db.dispose()
            raise
        set_faiss_threads(settings.faiss_threads)
        client = redis_client(settings.redis_url) if settings.redis_url else None
        cache = make_cache(settings, client)
        events = EventBus(client, prefix=settings.cache_prefix)
        ranking = RankingConfig(
            candidate_pool=settings.candidate_pool,
            ann_pool_max=settings.ann_pool_max,
            exact_subset_max_items=settings.exact_subset_max_items,
        )
        registry = Registry(settings, db, cache, events)
        return cls(settings, db, registry, cache, events, ranking, client)

    def start_jobs(self) -> None:
        """Retraining jobs: RQ on Redis when configured, else a worker thread in this process.
        Jobs left running by a dead worker are marked failed first, then by the poller."""
        from service.jobs.lifecycle import StaleSweep, sweep_stale
        from service.jobs.queue import encode_queue_name, make_queue

        sweep_stale(self.db, self.settings)
        self.registry.add_poll_task(StaleSweep(self.db, self.settings))
        self.jobs = make_queue(self.settings, self.redis, self.registry)
        name = encode_queue_name(self.settings)
        self.encode_jobs = make_queue(self.settings, self.redis, self.registry, name)

    def close(self) -> None:
        for queue in (self.encode_jobs, self.jobs):
            if queue is not None:
                queue.close()
        self.registry.stop()
        self.db.dispose()
        if self.redis is not None:
            self.redis.close()
