"""FAISS inner-product index over the fused item vectors ``v_i = concat_m(w_i^m e_i^m)``.

The scoring identity (ALGORITHMS.md 1.8) makes MARGO's score one inner product
``y_ui = q_u . v_i``, so an inner-product index returns its top-K: exactly for a flat index
(catalogues below ``ann_threshold_items``), approximately above it, with ``ann_kind``:

* ``ivf`` (default): IVF, ``sqrt(n)`` k-means lists, ``ivf_nprobe`` lists scanned, the
  vectors kept in fp16 (``ivf_store``; the scan is bound by memory traffic) or float32.
  Users mix interests, so their query points between clusters; scanning the lists
  nearest to the query finds the best items of every cluster they like.
* ``hnsw``: HNSW-Flat with inner product. Fast, but its greedy walk tends to stay in one of
  the user's clusters; on the planted-cluster benchmark its recall@20 stalls near 0.93-0.95
  whatever efSearch (bench/results/serve_load.md), below the 0.98 target.

Callers re-score the candidates exactly (``service/ranking.py``), so the ANN index only
decides which items are looked at, never their order.

The built index is written beside the bundle, ``<bundle>/index/<kind>-<params>-<fp>.faiss``
(temporary file + rename, trainer/atomic.py), and read back on the next start; ``fp`` is a
digest of the item embeddings and weights, so a changed bundle never reuses a stale index.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from service.metrics import faiss_timer
from service.settings import GpuMode, IndexKind, IvfStore, Settings
from trainer.atomic import atomic_path
from trainer.bundle import ModelBundle
from trainer.manifest import Manifest

log = logging.getLogger(__name__)

_threads_lock = threading.Lock()
_threads_set: int | None = None


def set_faiss_threads(n: int) -> None:
    """One OpenMP thread by default: FAISS's own threads stall when cores are shared."""
    global _threads_set
    with _threads_lock:
        if _threads_set != n:
            faiss.omp_set_num_threads(n)
            _threads_set = n


_resources: Any = None


def _gpu_resources() -> Any:
    """One set of GPU resources per process (FAISS's recommended pattern), kept alive here."""
    global _resources
    with _threads_lock:
        if _resources is None:
            _resources = faiss.StandardGpuResources()
        return _resources


def gpu_available(mode: GpuMode) -> bool:
    if mode is GpuMode.OFF or not hasattr(faiss, "StandardGpuResources"):
        return False
    return faiss.get_num_gpus() > 0


IVF_TRAIN_PER_LIST = 64
"""k-means training sample of an IVF index: this many vectors per list."""


@dataclass(frozen=True)
class IndexParams:
    kind: IndexKind
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 128
    ivf_lists: int = 0  # 0: sqrt(n_items)
    ivf_nprobe: int = 12
    ivf_store: IvfStore = IvfStore.FP16

    @classmethod
    def choose(cls, n_items: int, settings: Settings) -> IndexParams:
        """Flat below the threshold (or on a GPU, where brute force is cheap), ANN above."""
        if n_items < settings.ann_threshold_items or gpu_available(settings.gpu):
            return cls(IndexKind.FLAT)
        return cls(
            settings.ann_kind,
            hnsw_m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
            ivf_lists=settings.ivf_lists or max(1, int(round(math.sqrt(n_items)))),
            ivf_nprobe=settings.ivf_nprobe,
            ivf_store=settings.ivf_store,
        )

    def file_name(self, fingerprint: str) -> str:
        if self.kind is IndexKind.HNSW:
            return f"hnsw-m{self.hnsw_m}-efc{self.ef_construction}-{fingerprint}.faiss"
        if self.kind is IndexKind.IVF:
            store = "" if self.ivf_store is IvfStore.FLAT else f"-{self.ivf_store.value}"
            return f"ivf{self.ivf_lists}{store}-{fingerprint}.faiss"
        return f"flat-{fingerprint}.faiss"


def vectors_fingerprint(manifest: Manifest) -> str:
    """Digest of the checksums of the arrays the item vectors are built from."""
    parts = [manifest.sha256(f"{name}.npy") or "" for name in ("item_emb", "item_weights")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class ItemIndex:
    """A FAISS index over ``vectors`` (row i = bundle item i) plus the vectors themselves."""

    def __init__(self, index: Any, params: IndexParams, vectors: np.ndarray, on_gpu: bool) -> None:
        self.index = index
        self.params = params
        self.vectors = vectors
        self.on_gpu = on_gpu
        self._search_params: dict[int, Any] = {}  # beam width or nprobe -> FAISS parameters
        self._timer = faiss_timer(f"{params.kind.value}{'-gpu' if on_gpu else ''}")

    # -- construction ----------------------------------------------------------------------
    @staticmethod
    def _new(params: IndexParams, vectors: np.ndarray) -> Any:
        dim = vectors.shape[1]
        if params.kind is IndexKind.HNSW:
            index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.ef_construction
            return index
        if params.kind is IndexKind.IVF:
            lists = max(1, min(params.ivf_lists, vectors.shape[0]))
            quantizer = faiss.IndexFlatIP(dim)
            if params.ivf_store is IvfStore.FP16:
                index = faiss.IndexIVFScalarQuantizer(
                    quantizer, dim, lists, faiss.ScalarQuantizer.QT_fp16,
                    faiss.METRIC_INNER_PRODUCT,
                )  # fmt: skip
            else:
                index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
            n_train = min(vectors.shape[0], lists * IVF_TRAIN_PER_LIST)
            sample = np.random.default_rng(0).choice(vectors.shape[0], n_train, replace=False)
            index.train(vectors[np.sort(sample)])
            return index
        return faiss.IndexFlatIP(dim)

    @classmethod
    def build(cls, vectors: np.ndarray, params: IndexParams, *, use_gpu: bool = False) -> ItemIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = cls._new(params, vectors)
        index.add(vectors)
        return cls._placed(index, params, vectors, use_gpu)

    @classmethod
    def _placed(
        cls, index: Any, params: IndexParams, vectors: np.ndarray, use_gpu: bool
    ) -> ItemIndex:
        if use_gpu and params.kind is not IndexKind.HNSW:  # FAISS has no GPU HNSW
            gpu_index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
            if params.kind is IndexKind.IVF:
                faiss.GpuParameterSpace().set_index_parameter(
                    gpu_index, "nprobe", params.ivf_nprobe
                )
            return cls(gpu_index, params, vectors, on_gpu=True)
        return cls(index, params, vectors, on_gpu=False)

    @classmethod
    def load_or_build(
        cls,
        vectors: np.ndarray,
        params: IndexParams,
        *,
        index_dir: Path,
        fingerprint: str,
        use_gpu: bool = False,
        fallback_dir: Path | None = None,
    ) -> ItemIndex:
        """Read ``index_dir/<name>`` when it matches, else build it and save it there."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        name = params.file_name(fingerprint)
        dirs = [index_dir] + ([fallback_dir] if fallback_dir is not None else [])
        for d in dirs:
            path = d / name
            if path.is_file():
                try:
                    index = faiss.read_index(str(path))
                except RuntimeError as exc:
                    log.warning("index %s unreadable (%s); rebuilding", path, exc)
                    continue
                if index.ntotal == vectors.shape[0] and index.d == vectors.shape[1]:
                    return cls._placed(index, params, vectors, use_gpu)
                log.warning("index %s does not match the bundle; rebuilding", path)
        built = cls.build(vectors, params)
        for d in dirs:
            try:
                write_index_atomic(built.index, d / name)
                break
            except OSError as exc:
                log.warning("cannot save index to %s (%s)", d, exc)
        if use_gpu:
            return cls._placed(built.index, params, vectors, use_gpu)
        return built

    # -- queries -----------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.vectors.shape[0])

    def search(self, query: np.ndarray, n: int) -> np.ndarray:
        """Row ids of (about) the ``n`` largest inner products with ``query``, best first.

        HNSW explores ``max(ef_search, n)`` nodes: FAISS does not widen its beam to ``n`` by
        itself, and a beam narrower than ``n`` returns poor tails. IVF scans at least
        ``ivf_nprobe`` lists, more when ``n`` would not fit in them twice over.
        """
        n = min(n, self.ntotal)
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        x = query.reshape(1, -1)
        p = self.params
        start = time.perf_counter()
        if p.kind is IndexKind.HNSW:
            _, ids = self.index.search(x, n, params=self._params(max(p.ef_search, n)))
        elif p.kind is IndexKind.IVF and not self.on_gpu:
            per_list = self.ntotal / max(p.ivf_lists, 1)
            nprobe = min(p.ivf_lists, max(p.ivf_nprobe, math.ceil(2 * n / per_list)))
            _, ids = self.index.search(x, n, params=self._params(nprobe))
        else:
            _, ids = self.index.search(x, n)
        self._timer.observe(time.perf_counter() - start)
        ids = ids[0]
        return ids[ids >= 0]

    def _params(self, width: int) -> Any:
        """Search parameters (HNSW beam width or IVF lists to scan), made once per value."""
        params = self._search_params.get(width)
        if params is None:
            if self.params.kind is IndexKind.HNSW:
                params = faiss.SearchParametersHNSW(efSearch=width)
            else:
                params = faiss.SearchParametersIVF(nprobe=width)
            self._search_params[width] = params
        return params

    def exact_scores(self, query: np.ndarray) -> np.ndarray:
        """``V q`` for every item, float32 [n_items] (the exact fallback)."""
        return self.vectors @ query


def bundle_index(
    bundle: ModelBundle, version: str, settings: Settings, vectors: np.ndarray | None = None
) -> ItemIndex:
    """Read the bundle's index (beside it, else under ``index_cache_dir/<version>``) or build
    and save it; ``vectors``: the bundle's item vectors when the caller has them."""
    cache_dir = settings.index_cache_dir
    return ItemIndex.load_or_build(
        bundle.item_vectors() if vectors is None else vectors,
        IndexParams.choose(bundle.n_items, settings),
        index_dir=bundle.path / "index",
        fingerprint=vectors_fingerprint(bundle.manifest),
        use_gpu=gpu_available(settings.gpu),
        fallback_dir=cache_dir / version if cache_dir else None,
    )


def write_index_atomic(index: Any, path: Path) -> None:
    """Write ``index`` to ``path`` through a temporary file in the same directory."""
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
