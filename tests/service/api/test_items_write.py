"""POST /items: create and update items with content checked against the active model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.db.tables import ItemFeature
from tests.service.jobs.helpers import FAST, wait_job


def features(client: TestClient, item_id: str) -> dict[str, ItemFeature]:
    from service.db import crud

    with client.app.state.margo.db.session() as session:
        item = crud.get_item(session, external_id=item_id)
        rows = session.scalars(select(ItemFeature).where(ItemFeature.item_id == item.id))
        return {r.modality: r for r in rows}


def vec(n: int, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).standard_normal(n).round(4).tolist()


def test_create_and_update(live: tuple[TestClient, dict, dict]) -> None:
    client, _, write = live
    body = {
        "items": [
            {
                "item_id": "new-1",
                "title": "A new thing",
                "categories": ["c1", "fresh"],
                "metadata": {"price": 3.5},
                "content": {"image": {"vector": vec(16)}},
            },
            {"item_id": "0", "categories": ["relabelled"], "hidden": True},
        ]
    }
    r = client.post("/items", json=body, headers=write)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["created"] == ["new-1"] and out["updated"] == ["0"]
    assert "retrain" in out["recommendable"]
    item = client.get("/items/new-1").json()
    assert item["title"] == "A new thing" and item["metadata"] == {"price": 3.5}
    assert item["model"] is None  # not recommendable before a retrain
    old = client.get("/items/0").json()
    assert old["categories"] == ["relabelled"] and old["hidden"] is True
    stored = features(client, "new-1")["image"]
    assert stored.dim == 16
    assert np.allclose(np.frombuffer(stored.vector, np.float32), vec(16), atol=1e-6)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ({"image": {"vector": [0.0] * 15}}, "items.1.content.image.vector: has 15 values"),
        ({"image": {"vector": [0.0] * 15 + [float("nan")]}}, "image.vector: contains NaN or inf"),
        ({"text": {"vector": [float("inf")] * 384}}, "items.1.content.text.vector: contains NaN"),
        ({"audio": {"vector": [1.0]}}, "items.1.content.audio: unknown modality"),
        ({"image": {"text": "red shoes"}}, "items.1.content.image: raw text is accepted"),
        ({"text": {}}, "items.1.content.text: give exactly one"),
    ],
)
def test_bad_content_is_422_and_nothing_is_written(
    live: tuple[TestClient, dict, dict], content: dict, detail: str
) -> None:
    client, _, write = live
    body = {"items": [{"item_id": "ok-1"}, {"item_id": "bad-1", "content": content}]}
    raw = json.dumps(body).encode()  # the stdlib writes NaN and Infinity as JSON extensions
    r = client.post("/items", content=raw, headers={**write, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert detail in r.json()["detail"]
    assert client.get("/items/ok-1").status_code == 404


def test_text_is_encoded_by_its_job_and_learned_by_the_next_retrain(
    live: tuple[TestClient, dict, dict], fake_encoder: list[list[str]]
) -> None:
    client, admin, write = live
    items = [
        {
            "item_id": f"text-{n}",
            "title": f"Item {n}",
            "content": {
                "text": {"text": f"a lovely thing number {n}"},
                "image": {"vector": vec(16, n)},
            },
        }
        for n in range(3)
    ]
    r = client.post("/items", json={"items": items}, headers=write)
    assert r.status_code == 200, r.text
    # an encode job (service/jobs/encode.py) encodes the text at once, not the retrain
    assert wait_job(client, r.json()["job_id"], admin)["status"] == "succeeded"
    assert features(client, "text-0")["text"].dim == 384
    # users take to the new items, then a retrain learns them
    records = [
        {"user_id": str(u), "item_id": f"text-{u % 3}", "timestamp": 1_800_000_000}
        for u in range(30)
    ]
    assert (
        client.post("/interactions", json={"interactions": records}, headers=write).status_code
        == 201
    )
    r = client.post("/retrain", json={"hyperparameters": FAST}, headers=admin)
    job = wait_job(client, r.json()["job_id"], admin)
    assert job["status"] == "succeeded", job
    assert job["metrics"]["snapshot"]["texts_encoded"] == 0  # the encode job did it
    assert fake_encoder == [[f"a lovely thing number {n}" for n in range(3)]]
    stored = features(client, "text-1")["text"]
    assert stored.dim == 384 and stored.source_text == "a lovely thing number 1"
    assert client.get("/items/text-1").json()["model"]["model_version"] == job["result_version"]


def test_a_new_title_shows_in_recommendations_at_once(live: tuple[TestClient, dict, dict]) -> None:
    client, _, write = live
    url, params = "/users/0/recommendations", {"k": 1, "explain": False}
    first = client.get(url, params=params).json()["items"][0]
    r = client.post(
        "/items", json={"items": [{"item_id": first["item_id"], "title": "Renamed"}]}, headers=write
    )
    assert r.status_code == 200, r.text
    again = client.get(url, params=params).json()["items"][0]
    assert again["item_id"] == first["item_id"] and again["title"] == "Renamed" != first["title"]
