"""Model bundle round trip, verification, and refusal of corrupt or mismatched bundles."""

import json

import numpy as np
import pytest

from trainer.bundle import FORMAT_VERSION, Manifest, load_bundle, read_manifest, write_bundle
from trainer.errors import BundleError


def _arrays(n_users=3, n_items=4, m=2, d=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "user_emb": rng.normal(size=(n_users, m, d)).astype(np.float32),
        "item_emb": rng.normal(size=(n_items, m, d)).astype(np.float32),
        "item_weights": np.full((n_items, m), 0.5, np.float32),
        "item_pos_count": np.arange(n_items, dtype=np.int32),
        "item_popularity": np.arange(n_items, dtype=np.int32) + 1,
        "seen_indptr": np.array([0, 2, 3, 3], np.int64),
        "seen_indices": np.array([0, 1, 3], np.int32),
    }


def _write(path, **kw):
    arrays = kw.pop("arrays", _arrays())
    channels = [{"name": "image"}, {"name": "text"}]
    manifest = kw.pop("manifest", {"model": "margo", "channels": channels})
    return write_bundle(
        path,
        manifest=manifest,
        arrays=arrays,
        user_ids=["u1", "u2", "u3"],
        item_ids=["a", "b", "c", "d"],
        item_meta=[{"title": t, "categories": []} for t in "ABCD"],
        **kw,
    )


def test_round_trip(tmp_path):
    arrays = _arrays()
    path = _write(tmp_path / "b", arrays=arrays)
    b = load_bundle(path)
    assert b.channels == ["image", "text"] and b.n_users == 3 and b.n_items == 4 and b.dim == 2
    for k, v in arrays.items():
        np.testing.assert_array_equal(b.arrays[k], v)
    assert b.user_index("u2") == 1 and b.item_index("zz") is None
    assert b.seen_items(0).tolist() == [0, 1] and b.seen_items(2).tolist() == []
    assert b.item_meta[2]["title"] == "C"
    # the scoring identity: q_u . v_i = sum_m w_i^m e_u^m . e_i^m
    ref = (np.einsum("umd,imd->uim", arrays["user_emb"], arrays["item_emb"]) * 0.5).sum(-1)
    np.testing.assert_allclose(b.query_vectors() @ b.item_vectors().T, ref, rtol=1e-5, atol=1e-6)
    assert not list(tmp_path.glob(".b.tmp-*")), "temporary directory left behind"


def test_existing_bundle_needs_overwrite(tmp_path):
    _write(tmp_path / "b")
    with pytest.raises(BundleError, match="already exists"):
        _write(tmp_path / "b")
    _write(tmp_path / "b", overwrite=True)
    assert load_bundle(tmp_path / "b").n_items == 4


def test_corrupted_file_is_refused(tmp_path):
    path = _write(tmp_path / "b")
    data = bytearray((path / "item_emb.npy").read_bytes())
    data[-1] ^= 0xFF
    (path / "item_emb.npy").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"item_emb\.npy: checksum mismatch"):
        load_bundle(path)


def test_missing_file_and_bad_manifest_are_refused(tmp_path):
    path = _write(tmp_path / "b")
    (path / "seen_indices.npy").unlink()
    with pytest.raises(BundleError, match="seen_indices.npy: listed in the manifest but missing"):
        load_bundle(path)
    path2 = _write(tmp_path / "c")
    mf = json.loads((path2 / "manifest.json").read_text())
    mf["format_version"] = 99
    (path2 / "manifest.json").write_text(json.dumps(mf))
    with pytest.raises(BundleError, match="format_version 99"):
        read_manifest(path2)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")


def test_manifest_is_typed_and_keeps_unknown_keys(tmp_path):
    path = write_bundle(
        tmp_path / "b",
        manifest={
            "model": "margo",
            "channels": [{"name": "image", "feature_dim": 8}, {"name": "text"}],
            "dataset": {"fingerprint": "fp", "path": "/data/x"},
            "metrics": {"valid": {"recall@20": np.float32(0.25)}},
            "generator": "a tool this code does not know",
        },
        arrays=_arrays(),
        user_ids=["u1", "u2", "u3"],
        item_ids=["a", "b", "c", "d"],
    )
    m = load_bundle(path).manifest
    assert isinstance(m, Manifest) and m == read_manifest(path)
    assert m.channels[0].feature_dim == 8 and m.channels[1].feature_dim is None
    assert m.dataset.fingerprint == "fp" and m.dataset.n_train is None
    assert m.metrics["valid"]["recall@20"] == 0.25 and m.weights == "none"
    assert (m.n_users, m.n_items, m.dim, m.format_version) == (3, 4, 2, FORMAT_VERSION)
    assert m.sha256("item_emb.npy") and m.sha256("nothing.npy") is None
    assert m.model_extra == {"generator": "a tool this code does not know"}
    assert Manifest.from_json(m.to_json()) == m
    with pytest.raises(Exception):  # noqa: B017 - frozen: pydantic's own error type
        m.model = "other"  # type: ignore[misc]


def test_a_format_1_bundle_written_before_the_typed_manifest_loads(tmp_path):
    # the manifest as the untyped writer wrote it: no weights/dataset/training keys
    path = _write(tmp_path / "b")
    raw = json.loads((path / "manifest.json").read_text())
    for key in ("weights", "weight_scale", "seen", "hyperparameters", "dataset", "training"):
        raw.pop(key, None)
    raw["channels"] = [{"name": "image"}, {"name": "text"}]
    raw["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(raw, indent=2, sort_keys=True))
    b = load_bundle(path)
    assert b.channels == ["image", "text"] and b.manifest.dataset.fingerprint is None
    assert b.manifest.hyperparameters == {} and b.manifest.training is None


def test_a_bad_manifest_field_is_named(tmp_path):
    path = _write(tmp_path / "b")
    raw = json.loads((path / "manifest.json").read_text())
    raw["channels"] = [{"feature_dim": 3}]
    (path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"manifest\.json: channels\.0\.name: Field required"):
        read_manifest(path)
    raw.pop("dim")
    (path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="missing key 'dim'"):
        read_manifest(path)
    with pytest.raises(BundleError, match=r"c/manifest\.json: channels: Input should be"):
        _write(tmp_path / "c", manifest={"model": "margo", "channels": "image"})


def test_shape_mismatch_is_refused_before_anything_is_written(tmp_path):
    arrays = _arrays()
    arrays["item_weights"] = np.ones((5, 2), np.float32)  # 5 rows for 4 items
    with pytest.raises(BundleError, match=r"item_weights\.npy: shape \(5, 2\)"):
        _write(tmp_path / "b", arrays=arrays)
    assert list(tmp_path.iterdir()) == []


def test_nan_embeddings_are_refused(tmp_path):
    arrays = _arrays()
    arrays["user_emb"][0, 0, 0] = np.nan
    with pytest.raises(BundleError, match="NaN"):
        _write(tmp_path / "b", arrays=arrays)


def test_bundle_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, trainer.bundle; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_writer_hashes_each_file_once_and_still_checks_what_it_wrote(tmp_path, monkeypatch):
    import trainer.bundle

    hashed = []
    real = trainer.bundle.sha256_file
    monkeypatch.setattr(
        trainer.bundle, "sha256_file", lambda p, *a: hashed.append(p.name) or real(p, *a)
    )
    path = _write(tmp_path / "b")
    assert "item_emb.npy" in hashed and len(hashed) == len(set(hashed))
    assert len(hashed) == len(read_manifest(path).files)
    # the structural check after writing still runs: a NaN is refused without a second hash
    bad = _arrays()
    bad["item_emb"][0, 0, 0] = np.nan
    with pytest.raises(BundleError, match="NaN"):
        _write(tmp_path / "nan", arrays=bad)
