from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.schemas import ItemOut, ReliabilityOut, SimilarOut


def test_item_with_its_reliability_weights(client: TestClient) -> None:
    r = client.get("/items/i10")
    assert r.status_code == 200
    item = ItemOut.model_validate(r.json())
    assert item.title == "Item 10" and item.categories == ["even", "c1", "rare"]
    assert item.model is not None and item.model.model_version == "m2"
    assert sum(item.model.weights.values()) == pytest.approx(1.0, abs=1e-5)


def test_unknown_item_is_404(client: TestClient) -> None:
    r = client.get("/items/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert client.get("/items/nope/similar").status_code == 404


def test_similar_items(client: TestClient) -> None:
    body = SimilarOut.model_validate(client.get("/items/i3/similar", params={"k": 5}).json())
    assert len(body.items) == 5 and "i3" not in [it.item_id for it in body.items]
    assert client.get("/items/i3/similar", params={"k": 0}).status_code == 422


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_reliability_lists_items_by_weight(client: TestClient, order: str) -> None:
    r = client.get("/reliability", params={"modality": "text", "order": order, "limit": 10})
    body = ReliabilityOut.model_validate(r.json())
    weights = [it.weight for it in body.items]
    assert len(weights) == 10
    assert weights == sorted(weights, reverse=order == "desc")
    assert all(it.title for it in body.items)


def test_reliability_can_skip_low_confidence_items(client: TestClient) -> None:
    body = client.get("/reliability", params={"modality": "image", "min_positives": 10}).json()
    assert body["items"] and all(it["positives"] >= 10 for it in body["items"])


def test_reliability_of_an_unknown_modality_is_422(client: TestClient) -> None:
    r = client.get("/reliability", params={"modality": "audio"})
    assert r.status_code == 422 and "image, text" in r.json()["detail"]


def test_patch_relabels_an_item(client: TestClient) -> None:
    r = client.patch("/items/i1", json={"categories": ["special"]})
    assert r.json()["categories"] == ["special"]
    page = client.get("/users/u1/recommendations", params={"category": "special"}).json()
    assert [it["item_id"] for it in page["items"]] in (["i1"], [])  # [] if u1 has seen i1
    assert client.patch("/items/i1", json={"colour": "red"}).status_code == 422
