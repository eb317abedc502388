from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.auth import HEADER
from service.db.migrate import upgrade
from service.schemas import ReliabilityHistogramOut
from service.settings import Settings
from tests.service.conftest import make_keys, start_client
from tests.service.factories import make_bundle
from trainer.bundle import load_bundle

URL = "/reliability/histogram"


def test_histogram_counts_every_item_per_modality(client: TestClient, bundles: dict) -> None:
    r = client.get(URL, params={"bins": 10})
    assert r.status_code == 200
    body = ReliabilityHistogramOut.model_validate(r.json())
    weights = np.asarray(load_bundle(bundles["m2"]).arrays["item_weights"], dtype=np.float64)
    assert body.model_version == "m2" and body.n_items == len(weights) == 300
    assert len(body.edges) == 11
    assert body.edges[0] == pytest.approx(weights.min())
    assert body.edges[-1] == pytest.approx(weights.max())
    assert [h.modality for h in body.modalities] == ["image", "text"]
    for m, h in enumerate(body.modalities):
        expected, _ = np.histogram(weights[:, m], bins=np.asarray(body.edges))
        assert h.counts == expected.tolist() and sum(h.counts) == 300
        assert h.mean == pytest.approx(weights[:, m].mean())
        assert h.quantiles["p50"] == pytest.approx(np.median(weights[:, m]))


def test_min_positives_drops_items(client: TestClient, bundles: dict) -> None:
    positives = np.asarray(load_bundle(bundles["m2"]).arrays["item_pos_count"])
    body = client.get(URL, params={"min_positives": 10}).json()
    assert body["n_items"] == int((positives >= 10).sum()) < 300
    assert all(sum(h["counts"]) == body["n_items"] for h in body["modalities"])


@pytest.mark.parametrize("params", [{"bins": 1}, {"bins": 201}, {"min_positives": -1}])
def test_bad_parameters_are_422(client: TestClient, params: dict) -> None:
    r = client.get(URL, params=params)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


def test_no_active_model_is_503(empty_client: TestClient) -> None:
    assert empty_client.get(URL).status_code == 503


def test_histogram_needs_a_read_key_unless_reads_are_public(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(public_reads=False)
    upgrade(settings.database_url)
    make_bundle(settings.model_dir / "m1", seed=1)
    keys = make_keys(settings.database_url)
    for client in start_client(settings):
        assert client.get(URL).status_code == 401
        assert client.get(URL, headers={HEADER: keys["read"]}).status_code == 200
