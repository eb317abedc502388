"""Prometheus metric definitions (prometheus-client) that requests update as they run.

Counted while requests run (cheap: one pre-bound histogram child per route and status):

    margo_http_request_duration_seconds{method,route,status}  route = the path template
    margo_cache_requests_total{result="hit"|"miss"}            recommendation response cache
    margo_faiss_search_seconds{kind}                            one FAISS search

The ``GET /metrics`` route and the gauges read when scraped live in service/api/metrics.py,
so the index and the middleware import these definitions without the HTTP layer.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

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
