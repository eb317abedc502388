"""Helpers of the retraining tests: a tiny trained model, API keys, waiting for jobs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.auth import create_api_key
from service.db.session import Database
from service.settings import Settings

TERMINAL = {"succeeded", "failed", "cancelled", "rejected"}
TINY = {"n_users": 120, "n_items": 60, "n_interactions": 1500, "n_clusters": 4}
TINY_MODALITIES = {"image": 16, "text": 384}
FAST = {
    "epochs": 3,
    "patience": 2,
    "dim": 8,
    "hidden": 16,
    "knn_k": 5,
    "user_graph_k": 10,
    "prune_ratio": 0.8,
}
"""Hyper-parameters that keep a training run on the tiny data under about a second. The
pruning stays at FREEDOM's 0.8, where the fold-in tests' taste assertions were set: after 3
epochs on 60 items the default 0.5 ranks user 3's own top items too far apart for them."""


def train_tiny(root: Path, *, seed: int = 0, epochs: int = 3) -> tuple[Path, Path]:
    """A synthetic dataset and a MARGO bundle trained on it: (dataset dir, bundle dir)."""
    from trainer.config import TrainConfig
    from trainer.data import import_synth, load_dataset
    from trainer.export import export_model
    from trainer.train import fit

    data_dir = import_synth(
        root / "data", modalities=TINY_MODALITIES, seed=seed, progress=False, **TINY
    )
    data = load_dataset(data_dir)
    cfg = TrainConfig(model="margo", threads=1, **{**FAST, "epochs": epochs})
    result = fit(data, cfg, progress=False)
    return data_dir, export_model(result, data, cfg, root / "bundles" / "tiny")


def api_key(settings: Settings, role: str) -> dict[str, str]:
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            return {"X-API-Key": create_api_key(session, role, f"test-{role}")}
    finally:
        db.dispose()


def wait_job(
    client: TestClient, job_id: str, headers: dict[str, str], timeout: float = 60.0
) -> dict[str, Any]:
    """Poll GET /jobs/{id} until the job reaches a terminal status."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}", headers=headers).json()
        if job["status"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")
        time.sleep(0.1)


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
