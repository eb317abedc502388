"""``manifest.json`` of a model bundle as a typed, validated record (format: trainer/bundle.py).

``Manifest`` is what every reader gets (``trainer.bundle.read_manifest``, ``ModelBundle.manifest``);
nothing reads the file as a dict. Records are immutable and keep unknown keys, so a bundle
written by a newer writer or another tool still loads and round-trips.

Adding a field: give it a default (``None`` or empty), so bundles written before it still
load; bump ``FORMAT_VERSION`` when readers must tell the formats apart, and keep the old one
in ``READABLE_FORMAT_VERSIONS``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from trainer.errors import BundleError

FORMAT_VERSION = 3
"""The format this code writes (2: the optional reliability score per (item, modality);
3: the optional fold-in state of backbone models, ``fold_in`` and trainer/bundle_foldin.py)."""
READABLE_FORMAT_VERSIONS = (1, 2, 3)
"""Every format this code reads (older bundles keep loading after a format change)."""
MANIFEST = "manifest.json"


class _Record(BaseModel):
    """A manifest record: immutable, unknown keys kept (written by newer or other tools)."""

    model_config = ConfigDict(frozen=True, extra="allow")


class Channel(_Record):
    """One fused channel: a content modality, or ``id`` (no features)."""

    name: str
    feature_dim: int | None = None  # input feature width; None for a channel without content


class FileEntry(_Record):
    """A file of the bundle: its checksum, and shape and dtype for arrays."""

    sha256: str
    shape: list[int] | None = None
    dtype: str | None = None


class DatasetInfo(_Record):
    """The dataset bundle the model was trained on (all optional: synthetic bundles)."""

    name: str | None = None
    path: str | None = None  # as given to the trainer; relative paths are the caller's business
    fingerprint: str | None = None
    n_users: int | None = None
    n_items: int | None = None
    n_train: int | None = None
    n_valid: int | None = None
    n_test: int | None = None


class StageInfo(_Record):
    stage: str
    best_epoch: int
    epochs_run: int
    seconds: float
    median_epoch_seconds: float | None = None


class TrainingInfo(_Record):
    seconds: float | None = None
    stages: list[StageInfo] = []
    export_check_max_abs_error: float | None = None  # max |Q K^T - model score| at export


class ReliabilityInfo(_Record):
    """How the bundle's reliability score was computed (format 2; trainer/reliability).

    The score and its confidence are the arrays ``item_reliability.npy`` and
    ``item_reliability_confidence.npy`` (float32 [n_items, M], in [0, 1]).
    """

    method: dict[str, Any] = {}  # JSON description: signals, combiner, calibration, seed


class FoldInInfo(_Record):
    """How the model's item-graph step is repeated for a new item (format 3; trainer/foldin).

    The arrays are ``foldin_state.npy`` (float32 [n_items, M, d]: the catalogue's item states
    the item graph S is applied to) and per modality ``foldin_knn_<m>.npy`` (L2-normalised
    rows of the features the kNN graph was built from, ``knn_dtype``), with
    ``foldin_mu_<m>.npy`` / ``foldin_scale_<m>.npy`` when the features were standardised.
    A new item's channel c is ``self_scale * x + sum_m graphs[c][m] / k * (x + sum of the
    states of its k - 1 nearest catalogue items in modality m)``, x its layer-0 node.
    """

    backbone: str  # "dragon" (D5: E = Z + S Z) or "freedom" (F4: e = Z + S X)
    knn_k: int  # D5's k, the item itself included
    modalities: list[str]  # content modalities with a kNN graph, in channel order
    graphs: dict[str, dict[str, float]]  # channel -> {modality: a_m}, S = sum_m a_m S^m
    layer0: str  # "l2": x = rowL2normalize(H) (D2); "linear": x = H (FREEDOM's F1)
    self_scale: float  # a new item's own propagated state: x * self_scale (no edges)
    standardized: bool = False  # features standardised (x - mu) * s before the kNN search
    knn_dtype: str = "float16"
    # r of the low-rank prefilter ``foldin_basis_<m>`` [f_m, r] / ``foldin_low_<m>`` [n, r],
    # written for modalities wider than r (trainer.knn.search_arrays); None: none written
    search_rank: int | None = None


class Manifest(_Record):
    """``manifest.json``: what the bundle holds and how it was made.

    The writer fills ``format_version``, ``n_users``, ``n_items``, ``dim``, ``created_at`` and
    ``files``; the rest comes from the caller of ``write_bundle``.
    """

    format_version: int
    model: str
    channels: list[Channel]
    n_users: int
    n_items: int
    dim: int
    files: dict[str, FileEntry]
    created_at: str | None = None  # ISO 8601 UTC, e.g. 2024-05-01T12:00:00Z
    weights: str = "none"  # "learned" (w_i^m trained) or "none" (every w_i^m = 1)
    # item_weights = weight_scale * softmax(W): divide by it for the per-item distribution
    weight_scale: float = 1.0
    seen: str | None = None  # which interactions seen_indptr/seen_indices hold
    hyperparameters: dict[str, Any] = {}
    dataset: DatasetInfo = DatasetInfo()
    # export writes {"valid": {"recall@20": ...}, "test": {...}}; other writers may be flat
    metrics: dict[str, Any] = {}
    training: TrainingInfo | None = None
    # format 2: set exactly when the bundle holds the reliability score arrays
    reliability: ReliabilityInfo | None = None
    reliability_absent: str | None = None  # format 2: why the writer left the score out
    fold_in: FoldInInfo | None = None  # format 3: set exactly when the fold-in arrays are there

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]

    def sha256(self, file_name: str) -> str | None:
        """The recorded checksum of ``file_name`` (None: not in the bundle)."""
        entry = self.files.get(file_name)
        return None if entry is None else entry.sha256

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str | Path = MANIFEST) -> Manifest:
        """Parse and validate; BundleError names ``source`` and the offending field."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise BundleError(f"{source}: unreadable JSON ({exc})") from exc
        return cls.from_dict(raw, source=source)

    @classmethod
    def from_dict(cls, raw: Any, *, source: str | Path = MANIFEST) -> Manifest:
        if not isinstance(raw, dict):
            raise BundleError(f"{source}: expected a JSON object")
        version = raw.get("format_version")
        if version not in READABLE_FORMAT_VERSIONS:
            readable = ", ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
            raise BundleError(f"{source}: format_version {version!r}, this code reads {readable}")
        for key in ("model", "channels", "n_users", "n_items", "dim", "files"):
            if key not in raw:
                raise BundleError(f"{source}: missing key {key!r}")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise BundleError(f"{source}: {where}: {err['msg']}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (unknown keys included), as written to manifest.json."""
        return self.model_dump()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=json_default)


def json_default(obj: Any) -> Any:
    """``json.dumps`` default: numpy scalars and arrays, paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
