"""The reliability part of a model bundle (format 2; the rest: trainer/bundle.py).

Two optional arrays, ``item_reliability.npy`` and ``item_reliability_confidence.npy`` (float32
[n_items, M], in [0, 1]), hold the reliability score per (item, channel) that
trainer/reliability computes and its confidence; the manifest's ``reliability`` record says how
the score was computed. A bundle has both arrays and the record, or none of them; a reader of a
bundle without them gets the reason (format 1 predates the score; a format 2 writer may say
why it left the score out in ``reliability_absent``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.errors import BundleError
from trainer.manifest import MANIFEST, Manifest

RELIABILITY_SCORE = "item_reliability"
RELIABILITY_CONFIDENCE = "item_reliability_confidence"
RELIABILITY_ARRAYS = (RELIABILITY_SCORE, RELIABILITY_CONFIDENCE)
PRE_RELIABILITY = "bundle format 1 predates the reliability score (retrain to get it)"
NO_RELIABILITY = "the trainer wrote no reliability score into this bundle"


@dataclass(frozen=True)
class ItemReliability:
    """The reliability score per (item, channel) and its confidence, both in [0, 1]."""

    score: np.ndarray  # float32 [n_items, M]; 1 = content that can be trusted
    confidence: np.ndarray  # float32 [n_items, M]; low where little data backs the score
    method: dict[str, Any]  # how it was computed (manifest ``reliability.method``)


def reliability_of(manifest: Manifest, arrays: dict[str, np.ndarray]) -> ItemReliability | None:
    """The bundle's score and confidence, or None when it has none."""
    if manifest.reliability is None or RELIABILITY_SCORE not in arrays:
        return None
    return ItemReliability(
        score=arrays[RELIABILITY_SCORE],
        confidence=arrays[RELIABILITY_CONFIDENCE],
        method=dict(manifest.reliability.method),
    )


def absent_reason(manifest: Manifest) -> str:
    """Why a bundle without the score has none."""
    if manifest.format_version < 2:
        return PRE_RELIABILITY
    return manifest.reliability_absent or NO_RELIABILITY


def check_reliability(
    path: Path,
    manifest: Manifest,
    arrays: dict[str, np.ndarray],
    shape: tuple[int, int],
    *,
    verify: bool,
) -> None:
    """The reliability arrays come together with the manifest's ``reliability`` record, as
    float32 [n_items, M]; with ``verify`` their values lie in [0, 1]."""
    present = [name for name in RELIABILITY_ARRAYS if name in arrays]
    if not present and manifest.reliability is None:
        return
    if len(present) != len(RELIABILITY_ARRAYS) or manifest.reliability is None:
        missing = [f"{n}.npy" for n in RELIABILITY_ARRAYS if n not in arrays]
        what = ", ".join(missing) if missing else "the manifest's reliability record"
        raise BundleError(f"{path / MANIFEST}: reliability score without {what}")
    for name in RELIABILITY_ARRAYS:
        arr = arrays[name]
        where = path / f"{name}.npy"
        if arr.shape != shape:
            raise BundleError(f"{where}: shape {arr.shape}, expected {shape}")
        if str(arr.dtype) != "float32":
            raise BundleError(f"{where}: dtype {arr.dtype}, expected float32")
        if verify and not ((arr >= 0) & (arr <= 1)).all():  # NaN fails both comparisons
            raise BundleError(f"{where}: values must be finite and in [0, 1]")
