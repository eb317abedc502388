from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.index import IndexParams, ItemIndex, vectors_fingerprint
from service.settings import IndexKind, IvfStore, Settings
from trainer.manifest import Manifest


def _vectors(
    n: int, d: int = 16, seed: int = 0, noise: float = 0.3, clusters: int = 8
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((clusters, d))
    rows = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d))
    return rows.astype(np.float32)


def test_flat_search_equals_brute_force_numpy() -> None:
    vectors = _vectors(2000)
    index = ItemIndex.build(vectors, IndexParams(IndexKind.FLAT))
    queries = _vectors(20, seed=1)
    for q in queries:
        expected = np.argsort(-(vectors.astype(np.float64) @ q), kind="stable")[:50]
        assert index.search(q, 50).tolist() == expected.tolist()


@pytest.mark.parametrize(
    "params",
    [
        IndexParams(IndexKind.IVF, ivf_lists=70, ivf_nprobe=8, ivf_store=IvfStore.FLAT),
        IndexParams(IndexKind.IVF, ivf_lists=70, ivf_nprobe=8, ivf_store=IvfStore.FP16),
        IndexParams(IndexKind.HNSW, hnsw_m=16, ef_construction=80, ef_search=64),
    ],
    ids=["ivf", "ivf-fp16", "hnsw"],
)
def test_ann_candidates_hold_nearly_all_true_top_items(params: IndexParams) -> None:
    vectors = _vectors(5000, d=32, noise=0.5, clusters=40)
    index = ItemIndex.build(vectors, params)
    hits = 0
    for q in _vectors(30, d=32, noise=0.5, clusters=40, seed=2):
        truth = set(np.argsort(-(vectors @ q))[:10].tolist())
        hits += len(truth & set(index.search(q, 128).tolist()))  # the service's first pool
    assert hits / 300 >= 0.95


def test_choose_flat_below_threshold_and_ann_above() -> None:
    settings = Settings(ann_threshold_items=1000, ivf_nprobe=7)
    assert IndexParams.choose(999, settings).kind is IndexKind.FLAT
    params = IndexParams.choose(1600, settings)
    assert (params.kind, params.ivf_lists, params.ivf_nprobe) == (IndexKind.IVF, 40, 7)
    settings = Settings(ann_threshold_items=1000, ann_kind="hnsw", hnsw_m=24, hnsw_ef_search=99)
    params = IndexParams.choose(1000, settings)
    assert (params.kind, params.hnsw_m, params.ef_search) == (IndexKind.HNSW, 24, 99)


def test_ivf_fp16_store_finds_the_same_candidates_as_float32() -> None:
    """The fp16 scan only rounds scores: the candidate pool (re-scored exactly afterwards)
    holds the same items, and the stored index files are told apart by name."""
    vectors = _vectors(5000, d=32, noise=0.5, clusters=40)
    flat, half = (
        IndexParams(IndexKind.IVF, ivf_lists=70, ivf_nprobe=8, ivf_store=store)
        for store in (IvfStore.FLAT, IvfStore.FP16)
    )
    by_flat, by_half = ItemIndex.build(vectors, flat), ItemIndex.build(vectors, half)
    for q in _vectors(30, d=32, noise=0.5, clusters=40, seed=2):
        top_flat = by_flat.search(q, 128)[:20].tolist()
        top_half = set(by_half.search(q, 128).tolist())
        assert set(top_flat) <= top_half
    assert flat.file_name("fp") != half.file_name("fp")
    settings = Settings(ann_threshold_items=1000)
    assert IndexParams.choose(1600, settings).ivf_store is IvfStore.FP16  # the default


def test_ivf_deep_fetch_scans_more_lists() -> None:
    vectors = _vectors(3000)
    index = ItemIndex.build(vectors, IndexParams(IndexKind.IVF, ivf_lists=50, ivf_nprobe=1))
    assert index.search(vectors[0], 2000).size == 2000


def test_index_saved_beside_the_bundle_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = _vectors(500)
    params = IndexParams(IndexKind.HNSW, hnsw_m=8, ef_construction=20)
    first = ItemIndex.load_or_build(vectors, params, index_dir=tmp_path, fingerprint="abc")
    saved = tmp_path / params.file_name("abc")
    assert saved.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left

    def no_build(*args: object, **kwargs: object) -> ItemIndex:
        raise AssertionError("the saved index should have been read")

    monkeypatch.setattr(ItemIndex, "build", classmethod(no_build))
    second = ItemIndex.load_or_build(vectors, params, index_dir=tmp_path, fingerprint="abc")
    q = vectors[3]
    assert second.search(q, 10).tolist() == first.search(q, 10).tolist()


def test_an_index_of_other_vectors_is_rebuilt(tmp_path: Path) -> None:
    params = IndexParams(IndexKind.FLAT)
    ItemIndex.load_or_build(_vectors(100), params, index_dir=tmp_path, fingerprint="x")
    vectors = _vectors(300, seed=5)
    index = ItemIndex.load_or_build(vectors, params, index_dir=tmp_path, fingerprint="x")
    assert index.index.ntotal == 300


def _manifest(files: dict[str, str]) -> Manifest:
    return Manifest(
        format_version=1, model="margo", channels=[], n_users=0, n_items=0, dim=0,
        files={name: {"sha256": sha} for name, sha in files.items()},
    )  # fmt: skip


def test_fingerprint_follows_the_item_arrays() -> None:
    a = _manifest({"item_emb.npy": "1", "item_weights.npy": "2", "user_emb.npy": "4"})
    b = _manifest({"item_emb.npy": "1", "item_weights.npy": "3", "user_emb.npy": "4"})
    c = _manifest({"item_emb.npy": "1", "item_weights.npy": "2", "user_emb.npy": "5"})
    assert vectors_fingerprint(a) != vectors_fingerprint(b)
    assert vectors_fingerprint(a) == vectors_fingerprint(c)  # user arrays do not matter
