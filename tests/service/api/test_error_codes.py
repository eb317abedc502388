"""Each error class has its own HTTP status and code (service/errors.py), not one 409."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from service.errors import TRAINER_ERRORS, install_handlers
from trainer.errors import (
    BundleError,
    ConfigError,
    DataError,
    MargoError,
    ModelFitError,
    TrainingCancelled,
)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (BundleError("b"), 409, "bundle_invalid"),
        (DataError("d"), 409, "dataset_incompatible"),
        (ConfigError("c"), 422, "invalid_config"),
        (ModelFitError("f"), 500, "training_failed"),
        (TrainingCancelled("t"), 409, "cancelled"),
        (MargoError("m"), 500, "trainer_error"),
        (OperationalError("SELECT 1", {}, ConnectionRefusedError()), 503, "database_unavailable"),
    ],
)
def test_error_class_to_status_and_code(exc: Exception, status: int, code: str) -> None:
    app = FastAPI()
    install_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert (r.status_code, r.json()["error"]) == (status, code)
    assert set(r.json()) == {"error", "detail"}


def test_every_trainer_error_class_is_mapped() -> None:
    mapped = {cls for cls, _, _ in TRAINER_ERRORS}
    assert {BundleError, DataError, ConfigError, ModelFitError, TrainingCancelled} <= mapped
    assert TRAINER_ERRORS[-1][0] is MargoError  # the catch-all comes last


def test_activating_a_version_whose_bundle_is_gone_is_404(
    client: TestClient, bundles: dict[str, Path]
) -> None:
    shutil.rmtree(bundles["m1"])
    r = client.post("/models/m1/activate")
    assert r.status_code == 404 and r.json()["error"] == "bundle_missing"
    assert "is gone" in r.json()["detail"] and "still serving m2" in r.json()["detail"]
    assert client.get("/models/m1").json()["status"] == "failed"
    assert client.get("/users/u1/recommendations").json()["model_version"] == "m2"
