from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.schemas import ModelOut, ModelsOut
from tests.service.factories import corrupt, make_bundle


def test_list_models(client: TestClient) -> None:
    body = ModelsOut.model_validate(client.get("/models").json())
    assert body.active == body.live == "m2"
    assert {m.version: m.status.value for m in body.models} == {"m1": "ready", "m2": "active"}
    assert client.get("/models/m1").json()["metrics"] == {"recall@20": 0.11}


def test_unknown_version_is_404(client: TestClient) -> None:
    assert client.get("/models/m9").status_code == 404
    assert client.post("/models/m9/activate").json()["error"] == "not_found"


def test_activate_and_roll_back(client: TestClient) -> None:
    url = "/users/u1/recommendations"
    r = client.post("/models/m1/activate")
    assert r.status_code == 200
    assert ModelOut.model_validate(r.json()).live
    assert client.get(url).json()["model_version"] == "m1"
    assert client.get("/models/m2").json()["status"] == "retired"
    assert client.post("/models/m2/activate").json()["status"] == "active"
    assert client.get(url).json()["model_version"] == "m2"
    assert client.get("/models/m1").json()["status"] == "retired"


def test_corrupt_bundle_is_refused_and_the_old_model_serves(
    client: TestClient, bundles: dict[str, Path]
) -> None:
    registry = client.app.state.margo.registry
    registry.register(make_bundle(bundles["m1"].parent / "m3", seed=3))
    corrupt(bundles["m1"].parent / "m3")
    r = client.post("/models/m3/activate")
    assert r.status_code == 409
    assert "checksum" in r.json()["detail"] and "still serving m2" in r.json()["detail"]
    assert client.get("/models/m3").json()["status"] == "failed"
    assert client.get("/users/u1/recommendations").json()["model_version"] == "m2"
    again = client.post("/models/m3/activate")
    assert again.status_code == 409 and "failed" in again.json()["detail"]
