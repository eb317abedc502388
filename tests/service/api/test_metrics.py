"""/metrics after a few requests, request ids that round-trip, and the JSON access log."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.db.tables import Job
from service.log_config import JsonFormatter, TextFormatter, mask_keys
from service.metrics import UNMATCHED
from service.settings import Settings
from tests.service.conftest import start_client

REC = "/users/{user_id}/recommendations"


def samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(data: dict, name: str, **labels: str) -> float:
    return data.get((name, frozenset(labels.items())), 0.0)


def test_metrics_expose_the_listed_series(client: TestClient) -> None:
    with client.app.state.margo.db.session() as session:
        session.add_all(
            [
                Job(id="j1", kind="retrain", status="queued"),
                Job(id="j2", kind="retrain", status="failed"),
                Job(id="j3", kind="retrain", status="failed"),
            ]
        )
    before = samples(client)
    for _ in range(3):
        assert client.get("/users/u1/recommendations", params={"k": 5}).status_code == 200
    assert client.get("/users/u2/recommendations", params={"k": 5}).status_code == 200
    assert client.get("/models/nope").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    count = "margo_http_request_duration_seconds_count"
    assert delta(count, method="GET", route=REC, status="200") == 4
    assert delta(count, method="GET", route="/models/{version}", status="404") == 1
    assert delta(count, method="GET", route=UNMATCHED, status="404") == 1
    bucket = "margo_http_request_duration_seconds_bucket"
    assert delta(bucket, method="GET", route=REC, status="200", le="+Inf") == 4
    # u1 thrice (one miss, two hits), u2 once (a miss)
    assert delta("margo_cache_requests_total", result="hit") == 2
    assert delta("margo_cache_requests_total", result="miss") == 2
    assert delta("margo_faiss_search_seconds_count", kind="flat") >= 2
    assert value(after, "margo_model_info", version="m2", kind="margo") == 1
    assert value(after, "margo_catalog_items") == 300
    assert value(after, "margo_catalog_hidden_items") == 0
    assert value(after, "margo_jobs", status="failed") == 2
    assert value(after, "margo_jobs", status="queued") == 1


def test_metrics_without_a_model(empty_client: TestClient) -> None:
    data = samples(empty_client)
    assert not [k for k in data if k[0] == "margo_model_info"]
    assert not [k for k in data if k[0] == "margo_catalog_items"]


def test_metrics_can_be_switched_off(
    make_settings: Callable[..., Settings], bundles: dict[str, Path]
) -> None:
    for client in start_client(make_settings(metrics_enabled=False)):
        assert client.get("/metrics").status_code == 404


def test_request_id_round_trips(client: TestClient) -> None:
    r = client.get("/users/u1/recommendations", headers={"X-Request-ID": "abc-123.x:y"})
    assert r.headers["x-request-id"] == "abc-123.x:y"
    made = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/healthz").headers["x-request-id"] != made
    # errors carry it too; an unsafe or overlong id is replaced, not echoed
    assert (
        client.get("/models/nope", headers={"X-Request-ID": "e1"}).headers["x-request-id"] == "e1"
    )
    for bad in ("a b", "x" * 129, "<script>"):
        echoed = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert echoed != bad and re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_access_log_is_json_with_request_id_route_status_duration(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    client.get("/users/u1/recommendations", params={"k": 2}, headers={"X-Request-ID": "rid-7"})
    records = [r for r in caplog.records if r.name == "service.access"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["msg"] == "request" and line["level"] == "info"
    assert line["method"] == "GET" and line["route"] == REC
    assert line["path"] == "/users/u1/recommendations" and line["status"] == 200
    assert line["duration_ms"] > 0
    # the request id is that of the request (set while it ran; logged before it is reset)
    assert line["request_id"] == "rid-7"
    text = TextFormatter().format(records[0])
    assert "request_id=rid-7" in text and "status=200" in text


def test_log_lines_mask_anything_shaped_like_a_key() -> None:
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "got %s", ("mgk_ab12cd34_SeCrEt-_x9",), None
    )
    line = JsonFormatter().format(record)
    assert "SeCrEt" not in line and "mgk_ab12cd34_***" in line
    assert mask_keys("no key here") == "no key here"
