from __future__ import annotations

from fastapi.testclient import TestClient


def test_healthz(empty_client: TestClient) -> None:
    assert empty_client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_503_without_a_model(empty_client: TestClient) -> None:
    r = empty_client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"] == "no_active_model"


def test_readyz_once_a_model_is_live(client: TestClient) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ready" and body["model_version"] == "m2"
    assert body["cache"]["kind"] == "memory"
