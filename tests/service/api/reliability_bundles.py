"""Model bundles with and without a reliability score, for the reliability API tests.

The score here is constructed in the test (random, independent of the learned weights, so an
ordering by score differs from one by weight): the bundle and API contract does not depend on
how the trainer computes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.service.factories import CHANNELS, bundle_arrays, categories_of, item_id, user_id
from trainer.bundle import MANIFEST, RELIABILITY_CONFIDENCE, RELIABILITY_SCORE, write_bundle

METHOD = {"name": "test", "signals": ["constructed in the test"]}


def reliability_arrays(n_items: int, n_channels: int, seed: int) -> dict[str, np.ndarray]:
    """Score and confidence in [0, 1]; a few exact 0s and 1s and a tie, as real scores have."""
    rng = np.random.default_rng(1000 + seed)
    score = rng.uniform(0, 1, (n_items, n_channels)).astype(np.float32)
    score[0, 0], score[1, 0], score[2, 1] = 0.0, 1.0, score[3, 1]
    confidence = rng.uniform(0, 1, (n_items, n_channels)).astype(np.float32)
    return {RELIABILITY_SCORE: score, RELIABILITY_CONFIDENCE: confidence}


def write_test_bundle(
    path: Path,
    *,
    seed: int,
    scored: bool,
    created_at: str = "2024-03-01T00:00:00Z",
    n_users: int = 40,
    n_items: int = 300,
    dim: int = 8,
) -> Path:
    """A bundle like tests/service/factories.make_bundle, with the score when ``scored``."""
    arrays = bundle_arrays(n_users=n_users, n_items=n_items, dim=dim, seed=seed)
    manifest: dict = {
        "model": "margo",
        "channels": [{"name": c, "feature_dim": dim} for c in CHANNELS],
        "dataset": {"fingerprint": f"synthetic-{seed}"},
        "created_at": created_at,
    }
    if scored:
        arrays.update(reliability_arrays(n_items, len(CHANNELS), seed))
        manifest["reliability"] = {"method": METHOD}
    return write_bundle(
        path,
        manifest=manifest,
        arrays=arrays,
        user_ids=[user_id(u) for u in range(n_users)],
        item_ids=[item_id(i) for i in range(n_items)],
        item_meta=[{"title": f"Item {i}", "categories": categories_of(i)} for i in range(n_items)],
    )


def make_format_1(path: Path) -> Path:
    """Turn a bundle without the score into what format 1 wrote (its manifest is not in the
    file table, so only the version and the v2 fields change)."""
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["format_version"] = 1
    for key in ("reliability", "reliability_absent"):
        manifest.pop(key, None)
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return path
