"""``GET /metrics``: the Prometheus exposition of this process (or of every worker).

The metric definitions the request path updates live in service/metrics.py; this module adds
what is read only when scraped (nothing on the request path):

    margo_model_info{version,kind}, margo_catalog_items, margo_catalog_hidden_items
    margo_jobs{status}                                          from SQL: every process agrees
    margo_foldin_{items,updated_items,users}[_bytes,_capacity,_evicted]   fold-in in memory
    margo_foldin_write_backlog, margo_foldin_write_users_total{outcome}   written users' folds

With several uvicorn workers ``margo serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
folder before they start, so a scrape of any worker sums the counters of all of them; the
scrape-time gauges are those of the worker that answers (each serves the same model version
within ``MARGO_POLL_INTERVAL_S``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.db import crud
from service.fresh import user_sync
from service.metrics import CACHE_REQUESTS, FAISS_SEARCH_SECONDS, MULTIPROC_ENV, REQUEST_SECONDS

if TYPE_CHECKING:
    from service.live import LiveModel
    from service.state import ServiceState

log = logging.getLogger(__name__)


class StateCollector(Collector):
    """Gauges read from the app's state at scrape time."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        model = self.state.registry.current
        info = GaugeMetricFamily(
            "margo_model_info", "The model version this process serves", labels=["version", "kind"]
        )
        items = GaugeMetricFamily("margo_catalog_items", "Items in the live model's catalogue")
        hidden = GaugeMetricFamily("margo_catalog_hidden_items", "Items hidden from results")
        if model is not None:
            kind = model.bundle.manifest.model
            info.add_metric([model.version, kind], 1)
            items.add_metric([], model.catalog.n_items)
            hidden.add_metric([], model.catalog.n_hidden)
        yield info
        yield items
        yield hidden
        yield from foldin_gauges(model)

        jobs = GaugeMetricFamily("margo_jobs", "Jobs by status (from SQL)", labels=["status"])
        try:
            with self.state.db.session() as session:
                for status, count in crud.count_jobs_by_status(session).items():
                    jobs.add_metric([status], count)
        except Exception as exc:  # a scrape must not fail because SQL hiccups
            log.warning("metrics: cannot count jobs (%s)", type(exc).__name__)
        yield jobs


def foldin_gauges(model: LiveModel | None) -> Iterator[Metric]:
    """Folded items and users held in memory (service/fresh/), their bytes, caps, evictions."""
    specs = {  # kind: (what, its cap)
        "items": ("Items folded in since training held by this process", "ITEMS"),
        "updated_items": ("Catalogue items recomputed from their new users, held", "ITEMS"),
        "users": ("Folded user queries held by this process (LRU)", "USERS"),
    }
    for kind, (text, limit) in specs.items():
        count = GaugeMetricFamily(f"margo_foldin_{kind}", text)
        size = GaugeMetricFamily(f"margo_foldin_{kind}_bytes", f"Bytes of the {kind} arrays")
        cap = GaugeMetricFamily(f"margo_foldin_{kind}_capacity", f"MARGO_FOLDIN_MAX_{limit}")
        gone = GaugeMetricFamily(
            f"margo_foldin_{kind}_evicted", f"{kind} dropped for capacity (this model)"
        )
        if model is not None:
            held = {"items": model.folded, "updated_items": model.folded.updated,
                    "users": model.users}[kind]
            count.add_metric([], len(held))
            size.add_metric([], held.nbytes())
            cap.add_metric([], held.capacity)
            gone.add_metric([], held.evicted)
        yield from (count, size, cap, gone)
    yield from write_fold_gauges()


def write_fold_gauges() -> Iterator[Metric]:
    """The users of POST /interactions whose folds wait or run (WriteFolds), and what became
    of the others since this process started."""
    backlog = GaugeMetricFamily(
        "margo_foldin_write_backlog", "Written users waiting for their fold or being folded"
    )
    writes = user_sync.WRITES
    backlog.add_metric([], writes.backlog())
    done = CounterMetricFamily(
        "margo_foldin_write_users", "Written users by outcome (this process)", labels=["outcome"]
    )
    for outcome in ("folded", "coalesced", "dropped", "forgotten"):
        done.add_metric([outcome], getattr(writes, outcome))
    yield from (backlog, done)


def scrape(state: ServiceState) -> bytes:
    """The exposition text of this process (or of all workers in multiprocess mode)."""
    registry = CollectorRegistry(auto_describe=True)
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:  # ours only: the default registry adds process and platform series as well
        for collector in (REQUEST_SECONDS, CACHE_REQUESTS, FAISS_SEARCH_SECONDS):
            registry.register(collector)
    registry.register(StateCollector(state))
    return generate_latest(registry)


async def metrics_endpoint(request: Request) -> Response:
    # a thread: the job count reads SQL
    body = await run_in_threadpool(scrape, request.app.state.margo)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


metrics_route = Route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
"""Open like the health probes: counts and latencies, no data; restrict it in the network."""
