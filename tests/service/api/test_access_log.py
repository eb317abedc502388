"""The access log names each request once, templates static files, and keeps expected 503s
out of ERROR."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from service.log_config import TextFormatter, request_id_var


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.access"]


def test_text_lines_carry_the_request_id_once(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    client.get("/healthz", headers={"X-Request-ID": "rid-9"})
    (record,) = access_records(caplog)
    token = request_id_var.set("rid-9")  # as while the request runs: context and fields agree
    try:
        line = TextFormatter().format(record)
    finally:
        request_id_var.reset(token)
    assert line.count("request_id=") == 1 and "request_id=rid-9" in line


def test_static_files_are_logged_with_their_mount_template(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    assert client.get("/dashboard/static/dashboard.css").status_code == 200
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    routes = [r.fields["route"] for r in access_records(caplog)]
    assert routes == ["/dashboard/static/{path}", "/docs-assets/{path}"]


def test_readyz_503_while_starting_is_not_an_error(
    empty_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    assert empty_client.get("/readyz").status_code == 503
    (record,) = access_records(caplog)
    assert record.levelno == logging.INFO and record.fields["status"] == 503
