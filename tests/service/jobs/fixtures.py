"""Fixtures of the retraining tests (imported by the conftest files of tests/service/jobs and
tests/service/api): a tiny trained model whose dataset seeds the database,
apps on SQLite (in-process worker) and PostgreSQL, and API keys."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.db.migrate import upgrade
from service.settings import Settings
from tests.service.conftest import start_client
from tests.service.jobs.helpers import api_key, train_tiny


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset dir, bundle dir), trained once per test session."""
    import torch

    torch.set_num_threads(1)
    return train_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def job_settings(
    make_settings: Callable[..., Settings], tmp_path: Path, tiny_model: tuple[Path, Path]
) -> Callable[..., Settings]:
    """Settings whose model directory holds a copy of the tiny bundle; fast heartbeats."""

    def build(**overrides: Any) -> Settings:
        models = tmp_path / "models"
        if not (models / "tiny").exists():
            models.mkdir(parents=True, exist_ok=True)
            shutil.copytree(tiny_model[1], models / "tiny")
        values: dict[str, Any] = {
            "snapshot_dir": tmp_path / "snapshots",
            "job_heartbeat_s": 0.2,
            "job_stale_s": 3.0,
            "train_threads": 1,
        }
        values.update(overrides)
        settings = make_settings(**values)
        upgrade(settings.database_url)
        return settings

    return build


@pytest.fixture
def live(job_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient, dict, dict]]:
    """(client, admin headers, write headers) of an app on SQLite serving the tiny model."""
    settings = job_settings()
    admin, write = api_key(settings, "admin"), api_key(settings, "write")
    for client in start_client(settings):
        yield client, admin, write
