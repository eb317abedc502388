"""Every error, ours or the framework's, is JSON ``{error, detail}``."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/no/such/route")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "not_found", "detail": "Not Found"}


def test_wrong_method_is_json_405(client: TestClient) -> None:
    r = client.delete("/models")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_bad_body_is_json_422(client: TestClient) -> None:
    r = client.post("/interactions", json={"interactions": []})
    assert r.status_code == 422 and set(r.json()) == {"error", "detail"}


def test_docs_list_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/users/{user_id}/recommendations",
        "/items/{item_id}",
        "/items/{item_id}/similar",
        "/reliability",
        "/models",
        "/models/{version}",
        "/models/{version}/activate",
        "/healthz",
        "/readyz",
    ):
        assert path in paths
    rec = paths["/users/{user_id}/recommendations"]["get"]["responses"]
    assert "RecommendationsOut" in str(rec["200"]) and "ErrorOut" in str(rec["422"])
