"""The reliability score in the API: GET /reliability orders by it (learned weight beside it),
GET /items/{id} and every explanation carry it, the histogram offers it; a model without it
answers null fields with the reason."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.schemas import (
    ItemOut,
    RecommendationsOut,
    ReliabilityHistogramOut,
    ReliabilityOut,
)
from service.settings import Settings
from tests.service.api.reliability_bundles import METHOD, make_format_1, write_test_bundle
from tests.service.conftest import start_client
from trainer.bundle import load_bundle

CHANNELS = ["image", "text"]


@pytest.fixture
def scored(settings: Settings, api_keys: dict[str, str]) -> Iterator[tuple[TestClient, dict]]:
    """A started app serving a bundle that carries the score; yields (client, its arrays)."""
    path = write_test_bundle(settings.model_dir / "s1", seed=5, scored=True)
    arrays = {k: np.asarray(v) for k, v in load_bundle(path).arrays.items()}
    for client in start_client(settings, api_keys["admin"]):
        yield client, arrays


@pytest.fixture(params=["format-2", "format-1"])
def unscored(
    request: pytest.FixtureRequest, settings: Settings, api_keys: dict[str, str]
) -> Iterator[TestClient]:
    """A started app serving a bundle without the score: written now, or as format 1 wrote it."""
    path = write_test_bundle(settings.model_dir / "old", seed=6, scored=False)
    if request.param == "format-1":
        make_format_1(path)
    yield from start_client(settings, api_keys["admin"])


def rows_of(body: ReliabilityOut) -> list[int]:
    return [int(it.item_id[1:]) for it in body.items]


def flat(reliability: dict) -> dict[str, float]:
    """{modality: ReliabilityScore} as {"modality.score": .., "modality.confidence": ..}."""
    return {
        f"{k}.{field}": getattr(v, field)
        for k, v in reliability.items()
        for field in ("score", "confidence")
    }


def expected_flat(arrays: dict, row: int) -> dict[str, float]:
    score, conf = arrays["item_reliability"], arrays["item_reliability_confidence"]
    out = {}
    for m, c in enumerate(CHANNELS):
        out[f"{c}.score"], out[f"{c}.confidence"] = float(score[row, m]), float(conf[row, m])
    return out


# -- GET /reliability ----------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("modality", CHANNELS)
def test_reliability_orders_by_the_score_with_the_weight_beside_it(
    scored: tuple[TestClient, dict], order: str, modality: str
) -> None:
    client, arrays = scored
    r = client.get("/reliability", params={"modality": modality, "order": order, "limit": 300})
    assert r.status_code == 200
    body = ReliabilityOut.model_validate(r.json())
    assert body.by == "score" and body.reliability_absent is None
    assert body.reliability_method == METHOD
    m = CHANNELS.index(modality)
    score, conf = arrays["item_reliability"], arrays["item_reliability_confidence"]
    weights = arrays["item_weights"]
    # the full order: by score, ties by row (descending reverses it)
    expected = np.lexsort((np.arange(300), score[:, m]))
    if order == "desc":
        expected = expected[::-1]
    assert rows_of(body) == expected.tolist()
    assert [it.score for it in body.items] == sorted(
        (it.score for it in body.items), reverse=order == "desc"
    )
    for it in body.items[:20]:
        row = int(it.item_id[1:])
        assert it.score == pytest.approx(float(score[row, m]))
        assert it.confidence == pytest.approx(float(conf[row, m]))
        assert it.weight == pytest.approx(float(weights[row, m]))
        assert it.reliability is not None
        assert flat(it.reliability) == pytest.approx(expected_flat(arrays, row))


def test_the_ordering_by_weight_stays_available(scored: tuple[TestClient, dict]) -> None:
    client, arrays = scored
    body = ReliabilityOut.model_validate(
        client.get("/reliability", params={"modality": "text", "by": "weight", "limit": 300}).json()
    )
    assert body.by == "weight"
    assert rows_of(body) == np.lexsort((np.arange(300), arrays["item_weights"][:, 1])).tolist()
    # the score still rides along
    first = int(body.items[0].item_id[1:])
    assert body.items[0].score == pytest.approx(float(arrays["item_reliability"][first, 1]))
    # the two orders differ (the constructed score is independent of the weights)
    by_score = client.get("/reliability", params={"modality": "text", "limit": 300}).json()
    assert [it["item_id"] for it in by_score["items"]] != [it.item_id for it in body.items]


def test_min_confidence_skips_uncertain_scores(scored: tuple[TestClient, dict]) -> None:
    client, arrays = scored
    conf = arrays["item_reliability_confidence"][:, 0]
    body = client.get(
        "/reliability", params={"modality": "image", "min_confidence": 0.5, "limit": 1000}
    ).json()
    assert len(body["items"]) == int((conf >= 0.5).sum()) < 300
    assert all(it["confidence"] >= 0.5 for it in body["items"])
    r = client.get("/reliability", params={"modality": "image", "min_confidence": 2})
    assert r.status_code == 422


def test_without_the_score_the_order_is_by_weight_and_the_fields_say_why(
    unscored: TestClient,
) -> None:
    r = unscored.get("/reliability", params={"modality": "image", "limit": 5})
    body = ReliabilityOut.model_validate(r.json())
    assert body.by == "weight" and body.reliability_method is None
    assert body.reliability_absent and "reliability score" in body.reliability_absent
    weights = [it.weight for it in body.items]
    assert weights == sorted(weights) and len(weights) == 5
    assert all(it.score is None and it.confidence is None and it.reliability is None
               for it in body.items)  # fmt: skip
    # asking for the score explicitly is a conflict that names the reason
    for params in ({"by": "score"}, {"min_confidence": 0.5}):
        r = unscored.get("/reliability", params={"modality": "image", **params})
        assert r.status_code == 409 and body.reliability_absent in r.json()["detail"]


def test_a_format_1_bundle_says_it_predates_the_score(
    settings: Settings, api_keys: dict[str, str]
) -> None:
    make_format_1(write_test_bundle(settings.model_dir / "v1", seed=7, scored=False))
    for client in start_client(settings, api_keys["admin"]):
        body = client.get("/reliability", params={"modality": "text"}).json()
        assert "format 1" in body["reliability_absent"]


# -- GET /items/{id} -----------------------------------------------------------------------------
def test_an_item_carries_its_score_per_modality(scored: tuple[TestClient, dict]) -> None:
    client, arrays = scored
    item = ItemOut.model_validate(client.get("/items/i17").json())
    assert item.model is not None and item.model.reliability_absent is None
    assert item.model.reliability is not None
    assert flat(item.model.reliability) == pytest.approx(expected_flat(arrays, 17))


def test_an_item_of_a_model_without_the_score_says_why(unscored: TestClient) -> None:
    item = ItemOut.model_validate(unscored.get("/items/i17").json())
    assert item.model is not None and item.model.reliability is None
    assert item.model.reliability_absent and "reliability score" in item.model.reliability_absent


# -- explanations --------------------------------------------------------------------------------
def test_every_explanation_carries_the_score(scored: tuple[TestClient, dict]) -> None:
    client, arrays = scored
    r = client.get("/users/u3/recommendations", params={"k": 15, "explain": "true"})
    body = RecommendationsOut.model_validate(r.json())
    assert body.strategy == "personal" and len(body.items) == 15
    assert body.reliability_absent is None
    for it in body.items:
        row = int(it.item_id[1:])
        assert it.modalities is not None
        for m, name in enumerate(CHANNELS):
            term = it.modalities[name]
            assert term.reliability == pytest.approx(float(arrays["item_reliability"][row, m]))
            assert term.reliability_confidence == pytest.approx(
                float(arrays["item_reliability_confidence"][row, m])
            )


def test_explanations_of_a_model_without_the_score_say_why(unscored: TestClient) -> None:
    body = RecommendationsOut.model_validate(
        unscored.get("/users/u3/recommendations", params={"k": 5}).json()
    )
    assert body.reliability_absent and "reliability score" in body.reliability_absent
    assert body.items and all(
        t.reliability is None and t.reliability_confidence is None
        for it in body.items
        for t in (it.modalities or {}).values()
    )


# -- GET /reliability/histogram?of=score ---------------------------------------------------------
def test_the_histogram_offers_the_score(scored: tuple[TestClient, dict]) -> None:
    client, arrays = scored
    body = ReliabilityHistogramOut.model_validate(
        client.get("/reliability/histogram", params={"of": "score", "bins": 10}).json()
    )
    assert body.of == "score" and body.reliability_absent is None
    assert body.edges == pytest.approx(np.linspace(0, 1, 11).tolist())
    for m, hist in enumerate(body.modalities):
        column = arrays["item_reliability"][:, m].astype(np.float64)
        assert hist.counts == np.histogram(column, bins=np.linspace(0, 1, 11))[0].tolist()
        assert sum(hist.counts) == 300  # 0 and 1 fall inside the first and last bins
        assert hist.mean == pytest.approx(column.mean())
        assert hist.mean_confidence == pytest.approx(
            float(arrays["item_reliability_confidence"][:, m].mean())
        )
    # the default is still the learned weights
    default = client.get("/reliability/histogram").json()
    assert default["of"] == "weight" and default["modalities"][0]["mean_confidence"] is None


def test_the_score_histogram_of_a_model_without_it_says_why(unscored: TestClient) -> None:
    body = unscored.get("/reliability/histogram", params={"of": "score"}).json()
    assert body["reliability_absent"] and body["modalities"] == [] and body["edges"] == []
    assert unscored.get("/reliability/histogram", params={"of": "nope"}).status_code == 422


def test_min_positives_applies_to_the_score_histogram(scored: tuple[TestClient, dict]) -> None:
    client, arrays = scored
    body = client.get("/reliability/histogram", params={"of": "score", "min_positives": 10}).json()
    kept = int((arrays["item_pos_count"] >= 10).sum())
    assert body["n_items"] == kept < 300
    assert all(sum(h["counts"]) == kept for h in body["modalities"])

