"""Nothing written with POST /items is lost by a retrain, accepted or rejected (issue 14):
metadata (which a dataset bundle cannot carry), titles, categories and the hidden flag, also
edits made while the job runs. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from service.settings import Settings
from tests.service.conftest import start_client
from tests.service.jobs.helpers import FAST, api_key, wait_job

ACCEPT = {"hyperparameters": FAST}
REJECT = {"model": "bpr", "hyperparameters": {"epochs": 1, "lr": 1e-6, "dim": 4}}


@pytest.fixture(params=["sqlite", "postgres"])
def app(
    request: pytest.FixtureRequest, job_settings: Callable[..., Settings]
) -> Iterator[tuple[TestClient, dict, dict]]:
    overrides: dict[str, object] = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_db")
    if request.getfixturevalue("outcome") == "succeeded":
        overrides["retrain_tolerance"] = 0.95  # a fast model passes the gate for sure
    settings = job_settings(**overrides)
    admin, write = api_key(settings, "admin"), api_key(settings, "write")
    for client in start_client(settings):
        yield client, admin, write


@pytest.mark.parametrize("outcome", ["succeeded", "rejected"])
def test_item_fields_survive_a_retrain(app: tuple[TestClient, dict, dict], outcome: str) -> None:
    client, admin, write = app
    items = client.get("/users/0/recommendations", params={"k": 3}).json()["items"]
    a, b, c = (it["item_id"] for it in items)
    meta = {"brand": "Acme", "price": 12.5, "tags": ["x", "y"], "nested": {"n": 1}}
    r = client.post(
        "/items",
        json={"items": [
            {"item_id": a, "metadata": meta, "title": "A title", "categories": ["c1", "c2"]},
            {"item_id": "brand-new", "metadata": {"k": "v"}, "title": "New"},
        ]},
        headers=write,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert client.patch(f"/items/{b}", json={"hidden": True}, headers=write).status_code == 200
    before = {i: client.get(f"/items/{i}").json() for i in (a, b, c, "brand-new")}

    body = ACCEPT if outcome == "succeeded" else REJECT
    r = client.post("/retrain", json=body, headers=admin)
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job_id"], admin)
    assert job["status"] == outcome, job
    assert job["metrics"]["snapshot"]["warnings"] == []
    for item_id, was in before.items():
        now = client.get(f"/items/{item_id}").json()
        for field in ("title", "categories", "metadata", "hidden"):
            assert now[field] == was[field], (item_id, field, now[field], was[field])
    assert before[a]["metadata"] == meta
