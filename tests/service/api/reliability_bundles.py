"""Model bundles with and without a reliability score, for the reliability API tests.

The score here is constructed in the test (random, independent of the learned weights, so an
ordering by score differs from one by weight): the bundle and API contract does not depend on
how the trainer computes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.service.factories import CHANNELS, make_bundle
from trainer.bundle import MANIFEST, RELIABILITY_CONFIDENCE, RELIABILITY_SCORE

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
    return make_bundle(
        path,
        n_users=n_users,
        n_items=n_items,
        dim=dim,
        seed=seed,
        created_at=created_at,
        extra_manifest={"reliability": {"method": METHOD}} if scored else None,
        extra_arrays=reliability_arrays(n_items, len(CHANNELS), seed) if scored else None,
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
