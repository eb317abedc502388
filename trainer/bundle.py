"""Model bundle: the one contract between the trainer (writer) and the service (reader).

numpy + JSON only, so the service can load a model without importing torch.

A bundle is a directory::

    manifest.json        format version, model kind, channels, dims, hyper-parameters,
                         dataset fingerprint, metrics, and {file: sha256, shape, dtype}
    user_ids.json        external user ids, row u of every user array
    item_ids.json        external item ids, row i of every item array
    item_meta.json       optional: per-item {"title": ..., "categories": [...]}
    user_emb.npy         float32 [n_users, M, d]   e_u^m, one 64-d block per channel
    item_emb.npy         float32 [n_items, M, d]   e_i^m
    item_weights.npy     float32 [n_items, M]      w_i^m (1.0 everywhere for unweighted fusion)
    item_pos_count.npy   int32   [n_items]         training positives per item (weight confidence)
    item_popularity.npy  int32   [n_items]         all interactions per item (popular fallback)
    seen_indptr.npy      int64   [n_users + 1]     CSR of each user's training items
    seen_indices.npy     int32   [nnz]
    + optional arrays listed in OPTIONAL_ARRAYS (fixed graphs, cold-start projections)
    item_reliability.npy             float32 [n_items, M]  format 2, optional: reliability
    item_reliability_confidence.npy  float32 [n_items, M]  score in [0, 1] and its confidence
                                                           (both or neither; manifest
                                                           ``reliability`` says how computed)
    foldin_*.npy  format 3, optional: the state a new item is placed with, no retrain
                  (trainer/bundle_foldin.py: arrays and manifest ``fold_in``; trainer/foldin)

Scoring identity (ALGORITHMS.md 1.8): y_ui = sum_m w_i^m (e_u^m . e_i^m) = q_u . v_i with
q_u = concat_m e_u^m and v_i = concat_m w_i^m e_i^m.

The writer builds the whole directory under a temporary name beside the target and renames it
into place (trainer/atomic.py), so a reader never sees half a bundle.

``manifest.json`` is read into a typed ``Manifest`` (trainer/manifest.py); nothing else reads
it as a dict.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer import scoring
from trainer.atomic import atomic_dir
from trainer.bundle_foldin import check_foldin
from trainer.bundle_reliability import (
    RELIABILITY_ARRAYS,
    RELIABILITY_CONFIDENCE,
    RELIABILITY_SCORE,
    ItemReliability,
    absent_reason,
    check_reliability,
    reliability_of,
)
from trainer.errors import BundleError
from trainer.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    READABLE_FORMAT_VERSIONS,
    Channel,
    DatasetInfo,
    FileEntry,
    Manifest,
    ReliabilityInfo,
    StageInfo,
    TrainingInfo,
    json_default,
)

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "OPTIONAL_ARRAYS",
    "READABLE_FORMAT_VERSIONS",
    "RELIABILITY_CONFIDENCE",
    "RELIABILITY_SCORE",
    "REQUIRED_ARRAYS",
    "Channel",
    "DatasetInfo",
    "FileEntry",
    "ItemReliability",
    "Manifest",
    "ModelBundle",
    "ReliabilityInfo",
    "StageInfo",
    "TrainingInfo",
    "load_bundle",
    "read_manifest",
    "sha256_file",
    "write_bundle",
]

# name -> (dtype, shape symbols). Symbols: U users, I items, M channels, D dim, N nnz, P = U + 1.
REQUIRED_ARRAYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "user_emb": ("float32", ("U", "M", "D")),
    "item_emb": ("float32", ("I", "M", "D")),
    "item_weights": ("float32", ("I", "M")),
    "item_pos_count": ("int32", ("I",)),
    "item_popularity": ("int32", ("I",)),
    "seen_indptr": ("int64", ("P",)),
    "seen_indices": ("int32", ("N",)),
}
# Optional arrays: checked against the manifest's checksums when present. Shapes beyond the
# leading dimension are free (projection matrices differ per channel).
OPTIONAL_ARRAYS = (
    "user_graph_indptr",  # int64 [U + 1]   fixed user-user graph G the user vectors used (D6)
    "user_graph_indices",  # int32 [nnz_g]
    "user_graph_data",  # float32 [nnz_g]
    "item_reliability",  # float32 [I, M]  reliability score per (item, channel), in [0, 1]
    "item_reliability_confidence",  # float32 [I, M]  its confidence, in [0, 1]
)
PROJECTION_PREFIX = "proj_"  # proj_<channel>_<w1|b1|w2|b2>.npy: feature -> 64-d item node (D1)


@dataclass(frozen=True)
class ModelBundle:
    """A verified model bundle held in memory (arrays may be memory-mapped)."""

    path: Path
    manifest: Manifest
    user_ids: list[str]
    item_ids: list[str]
    arrays: dict[str, np.ndarray]
    item_meta: list[dict[str, Any]] | None = None
    _user_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _item_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._user_index.update({u: k for k, u in enumerate(self.user_ids)})
        self._item_index.update({i: k for k, i in enumerate(self.item_ids)})

    # -- shape facts ---------------------------------------------------------------------
    @property
    def channels(self) -> list[str]:
        return self.manifest.channel_names

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return self.manifest.dim

    def user_index(self, external_id: str) -> int | None:
        return self._user_index.get(external_id)

    def item_index(self, external_id: str) -> int | None:
        return self._item_index.get(external_id)

    # -- the scoring identity (trainer/scoring.py) -----------------------------------------
    def query_vectors(self) -> np.ndarray:
        """Q = concat_m e_u^m, [n_users, M*d] float32."""
        return scoring.query_vectors(self.arrays["user_emb"])

    def item_vectors(self) -> np.ndarray:
        """V = concat_m w_i^m e_i^m, [n_items, M*d] float32 (ALGORITHMS.md 1.8)."""
        return scoring.item_vectors(self.arrays["item_emb"], self.arrays["item_weights"])

    def modality_terms(
        self, user: int, rows: np.ndarray, fused: np.ndarray | None = None
    ) -> scoring.ModalityTerms:
        """User row ``user``'s scores of item ``rows`` split by modality.

        ``fused``: the rows' v_i when the caller holds them (the index), else computed.
        """
        arrays = self.arrays
        item_emb, weights = arrays["item_emb"][rows], arrays["item_weights"][rows]
        if fused is None:
            fused = scoring.item_vectors(item_emb, weights)
        return scoring.modality_terms(arrays["user_emb"][user], item_emb, weights, fused)

    # -- the reliability score (format 2, optional) ----------------------------------------
    @property
    def reliability(self) -> ItemReliability | None:
        """Score and confidence per (item, channel), or None (``reliability_absent`` says why)."""
        return reliability_of(self.manifest, self.arrays)

    @property
    def reliability_absent(self) -> str | None:
        """Why the bundle has no reliability score; None when it has one."""
        return None if self.reliability is not None else absent_reason(self.manifest)

    def seen_items(self, user: int) -> np.ndarray:
        ptr = self.arrays["seen_indptr"]
        return self.arrays["seen_indices"][ptr[user] : ptr[user + 1]]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_bundle(
    out: str | Path,
    *,
    manifest: dict[str, Any],
    arrays: dict[str, np.ndarray],
    user_ids: list[str],
    item_ids: list[str],
    item_meta: list[dict[str, Any]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle atomically (temporary directory, then rename) and return its path.

    ``manifest`` holds the caller's ``Manifest`` fields, at least ``model`` and ``channels``
    ([{"name", "feature_dim"}]); the writer adds format version, sizes, creation time and the
    file table with checksums, and validates the whole before writing it.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists (pass overwrite to replace it)")
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise BundleError(f"{out}: cannot write a bundle without {', '.join(missing)}")
    with atomic_dir(out, durable=True) as tmp:
        files: dict[str, dict[str, Any]] = {}

        def record(name: str, path: Path, arr: np.ndarray | None = None) -> None:
            entry: dict[str, Any] = {"sha256": sha256_file(path)}
            if arr is not None:
                entry.update(shape=list(arr.shape), dtype=str(arr.dtype))
            files[name] = entry

        for name, arr in arrays.items():
            if name in REQUIRED_ARRAYS:
                arr = np.ascontiguousarray(arr, dtype=REQUIRED_ARRAYS[name][0])
            elif name in RELIABILITY_ARRAYS:
                arr = np.ascontiguousarray(arr, dtype=np.float32)
            else:
                arr = np.ascontiguousarray(arr)
            path = tmp / f"{name}.npy"
            np.save(path, arr, allow_pickle=False)
            record(f"{name}.npy", path, arr)
        for name, payload in (
            ("user_ids.json", [str(u) for u in user_ids]),
            ("item_ids.json", [str(i) for i in item_ids]),
            *([("item_meta.json", item_meta)] if item_meta is not None else []),
        ):
            path = tmp / name
            path.write_text(json.dumps(payload, ensure_ascii=False))
            record(name, path)

        full = dict(manifest)
        full.update(
            format_version=FORMAT_VERSION,
            n_users=len(user_ids),
            n_items=len(item_ids),
            dim=int(arrays["user_emb"].shape[2]),
            created_at=full.get("created_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            files=files,
        )
        # numpy scalars (metrics, hyper-parameters) become plain JSON values first
        plain = json.loads(json.dumps(full, default=json_default))
        (tmp / MANIFEST).write_text(Manifest.from_dict(plain, source=out / MANIFEST).to_json())
        # check what we wrote before anyone can see it; its hashes were taken a moment ago,
        # and the reader (registration) checks them again: no third pass here
        load_bundle(tmp, checksums=False)
    return out


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate manifest.json only (cheap; no checksums)."""
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise BundleError(f"{mf}: not found (is {path} a model bundle?)")
    try:
        text = mf.read_text()
    except OSError as exc:
        raise BundleError(f"{mf}: unreadable ({exc})") from exc
    return Manifest.from_json(text, source=mf)


def _refuse_duplicates(file: Path, ids: list[str]) -> None:
    seen: dict[str, int] = {}
    for n, value in enumerate(ids):
        first = seen.setdefault(value, n)
        if first != n:
            raise BundleError(f"{file}: id {value!r} appears twice (entries {first} and {n})")


def load_bundle(
    path: str | Path, *, verify: bool = True, mmap: bool = False, checksums: bool = True
) -> ModelBundle:
    """Load a bundle; with ``verify`` check every checksum, dtype, shape and finiteness.

    ``checksums=False`` keeps the other checks but trusts the recorded hashes (the writer's
    own check of what it has just hashed). Raises BundleError naming the offending file on any
    mismatch.
    """
    path = Path(path)
    manifest = read_manifest(path)
    files = manifest.files
    for name in [f"{k}.npy" for k in REQUIRED_ARRAYS] + ["user_ids.json", "item_ids.json"]:
        if name not in files:
            raise BundleError(f"{path / MANIFEST}: file table lacks {name}")
    for name, entry in files.items():
        fp = path / name
        if not fp.is_file():
            raise BundleError(f"{fp}: listed in the manifest but missing")
        if verify and checksums and sha256_file(fp) != entry.sha256:
            raise BundleError(f"{fp}: checksum mismatch (file changed or corrupt)")

    def read_json_list(name: str) -> list[Any]:
        try:
            data = json.loads((path / name).read_text())
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path / name}: unreadable JSON ({exc})") from exc
        if not isinstance(data, list):
            raise BundleError(f"{path / name}: expected a JSON list")
        return data

    user_ids = [str(u) for u in read_json_list("user_ids.json")]
    item_ids = [str(i) for i in read_json_list("item_ids.json")]
    for name, ids in (("user_ids.json", user_ids), ("item_ids.json", item_ids)):
        _refuse_duplicates(path / name, ids)  # a repeated id would be served twice
    item_meta = read_json_list("item_meta.json") if "item_meta.json" in files else None

    arrays: dict[str, np.ndarray] = {}
    for name in files:
        if not name.endswith(".npy"):
            continue
        try:
            arrays[name[:-4]] = np.load(
                path / name, allow_pickle=False, mmap_mode="r" if mmap else None
            )
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path / name}: not a readable .npy array ({exc})") from exc

    n_ch = len(manifest.channels)
    sizes = {
        "U": len(user_ids),
        "I": len(item_ids),
        "M": n_ch,
        "D": manifest.dim,
        "P": len(user_ids) + 1,
        "N": int(arrays["seen_indices"].shape[0]) if "seen_indices" in arrays else 0,
    }
    if (sizes["U"], sizes["I"]) != (manifest.n_users, manifest.n_items):
        raise BundleError(
            f"{path / MANIFEST}: n_users/n_items {manifest.n_users}/{manifest.n_items} "
            f"but id lists hold {sizes['U']}/{sizes['I']}"
        )
    if item_meta is not None and len(item_meta) != sizes["I"]:
        raise BundleError(
            f"{path / 'item_meta.json'}: {len(item_meta)} rows for {sizes['I']} items"
        )
    for name, (dtype, symbols) in REQUIRED_ARRAYS.items():
        arr = arrays[name]
        want = tuple(sizes[s] for s in symbols)
        if arr.shape != want:
            raise BundleError(f"{path / (name + '.npy')}: shape {arr.shape}, expected {want}")
        if str(arr.dtype) != dtype:
            raise BundleError(f"{path / (name + '.npy')}: dtype {arr.dtype}, expected {dtype}")
    if verify:
        for name in ("user_emb", "item_emb", "item_weights"):
            if not np.isfinite(arrays[name]).all():
                raise BundleError(f"{path / (name + '.npy')}: contains NaN or inf")
        ptr = arrays["seen_indptr"]
        if ptr[0] != 0 or ptr[-1] != sizes["N"] or np.any(np.diff(ptr) < 0):
            raise BundleError(f"{path / 'seen_indptr.npy'}: not a valid CSR row pointer")
        idx = arrays["seen_indices"]
        if idx.size and (idx.min() < 0 or idx.max() >= sizes["I"]):
            raise BundleError(f"{path / 'seen_indices.npy'}: item index out of range")
        if "user_graph_indptr" in arrays and arrays["user_graph_indptr"].shape != (sizes["P"],):
            raise BundleError(f"{path / 'user_graph_indptr.npy'}: expected {sizes['P']} rows")
    check_reliability(path, manifest, arrays, (sizes["I"], sizes["M"]), verify=verify)
    check_foldin(path, manifest, arrays, sizes, verify=verify)
    return ModelBundle(
        path=path,
        manifest=manifest,
        user_ids=user_ids,
        item_ids=item_ids,
        arrays=arrays,
        item_meta=item_meta,
    )

