"""Prometheus metrics (prometheus-client) and the ``GET /metrics`` route.

Counted while requests run (cheap: one pre-bound histogram child per route and status):

    margo_http_request_duration_seconds{method,route,status}  route = the path template
    margo_cache_requests_total{result="hit"|"miss"}            recommendation response cache
    margo_faiss_search_seconds{kind}                            one FAISS search

Read when scraped (nothing on the request path):

    margo_model_info{version,kind}, margo_catalog_items, margo_catalog_hidden_items
    margo_jobs{status}                                          from SQL: every process agrees

With several uvicorn workers ``margo serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
folder before they start, so a scrape of any worker sums the counters of all of them; the
scrape-time gauges are those of the worker that answers (each serves the same model version
within ``MARGO_POLL_INTERVAL_S``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from service.state import ServiceState

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
FAISS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

# Process-wide, like every prometheus-client metric; several apps in one process (tests)
# share them, so tests compare differences, not absolute values.
REQUEST_SECONDS = Histogram(
    "margo_http_request_duration_seconds",
    "HTTP request latency by method, route template and status code",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
CACHE_REQUESTS = Counter(
    "margo_cache_requests", "Recommendation response cache lookups", ["result"]
)
FAISS_SEARCH_SECONDS = Histogram(
    "margo_faiss_search_seconds",
    "Latency of one FAISS index search",
    ["kind"],
    buckets=FAISS_BUCKETS,
)
CACHE_HIT = CACHE_REQUESTS.labels("hit")
CACHE_MISS = CACHE_REQUESTS.labels("miss")

UNMATCHED = "<unmatched>"
"""The route label of requests no route matched (keeps the label set bounded)."""


class RequestTimer:
    """Histogram children by (method, route, status), bound once: ``labels()`` costs more
    than the observation itself."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, int], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = REQUEST_SECONDS.labels(method, route, str(status))
        child.observe(seconds)


def faiss_timer(kind: str) -> Any:
    """The histogram child one index observes its searches with."""
    return FAISS_SEARCH_SECONDS.labels(kind)


class StateCollector(Collector):
    """Gauges read from the app's state at scrape time."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        from service.db.tables import Job

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

        jobs = GaugeMetricFamily("margo_jobs", "Jobs by status (from SQL)", labels=["status"])
        try:
            with self.state.db.session() as session:
                rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
                for status, count in rows:
                    jobs.add_metric([status], count)
        except Exception as exc:  # a scrape must not fail because SQL hiccups
            log.warning("metrics: cannot count jobs (%s)", type(exc).__name__)
        yield jobs


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
