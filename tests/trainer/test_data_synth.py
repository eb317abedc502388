"""Synthetic generator: shapes, corruption masks, determinism, planted (learnable) structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.data.dataset import Dataset, load_dataset
from trainer.data.importers import import_synth
from trainer.errors import ConfigError

SMALL = dict(
    n_users=300,
    n_items=200,
    n_interactions=3000,
    modalities={"image": 64, "text": 32},
    n_clusters=5,
    progress=False,
)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return load_dataset(import_synth(tmp_path_factory.mktemp("synth") / "s", seed=3, **SMALL))


def _clusters(ds: Dataset) -> np.ndarray:
    assert ds.item_meta is not None
    return np.array([int(m["categories"][0].removeprefix("cluster-")) for m in ds.item_meta])


def test_shapes_and_counts(small: Dataset) -> None:
    ds = small
    assert (ds.n_users, ds.n_items) == (300, 200)
    pairs = np.concatenate([ds.train, ds.valid, ds.test])
    assert len(pairs) == 3000 and len(np.unique(pairs, axis=0)) == 3000
    assert np.bincount(pairs[:, 0], minlength=300).min() >= 5
    assert np.unique(ds.valid[:, 0]).size == 300 and np.unique(ds.test[:, 0]).size == 300
    assert ds.features["image"].shape == (200, 64) and ds.features["image"].min() >= 0.0
    assert np.allclose(np.linalg.norm(ds.features["text"], axis=1), 1.0, atol=1e-5)
    assert ds.item_meta is not None and ds.item_meta[17]["title"].startswith("item 17 (cluster ")


def test_corruption_masks(small: Dataset, tmp_path: Path) -> None:
    assert small.corruption is not None
    image, text = small.corruption["image"], small.corruption["text"]
    assert image.sum() + text.sum() == 40  # round(0.2 * 200), one modality per item
    assert not (image & text).any() and image.any() and text.any()
    out = import_synth(tmp_path / "t", corrupt_modality="text", corrupt_fraction=0.1, **SMALL)
    ds = load_dataset(out)
    assert ds.corruption is not None
    assert ds.corruption["text"].sum() == 20 and not ds.corruption["image"].any()


def test_deterministic(small: Dataset, tmp_path: Path) -> None:
    again = load_dataset(import_synth(tmp_path / "a", seed=3, **SMALL))
    assert again.fingerprint == small.fingerprint
    other = load_dataset(import_synth(tmp_path / "b", seed=4, **SMALL))
    assert other.fingerprint != small.fingerprint


def test_features_carry_cluster_signal(small: Dataset) -> None:
    cluster = _clusters(small)
    assert small.corruption is not None
    for m, f in small.features.items():
        clean = ~small.corruption[m]
        x = f - f[clean].mean(axis=0)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T
        same = cluster[:, None] == cluster[None, :]
        np.fill_diagonal(same, False)
        other = ~same
        np.fill_diagonal(other, False)
        pair_clean = clean[:, None] & clean[None, :]
        assert sim[same & pair_clean].mean() > sim[other & pair_clean].mean() + 0.1, m
        # A corrupted row is noise: no closer to its own cluster than to the others.
        bad = ~clean
        gap = sim[same & bad[:, None]].mean() - sim[other & bad[:, None]].mean()
        assert abs(gap) < 0.05, m


def test_interactions_follow_planted_preferences(small: Dataset) -> None:
    cluster = _clusters(small)
    pairs = np.concatenate([small.train, small.valid, small.test])
    per_user = np.zeros((small.n_users, cluster.max() + 1))
    np.add.at(per_user, (pairs[:, 0], cluster[pairs[:, 1]]), 1)
    dominant = (per_user.max(axis=1) / per_user.sum(axis=1)).mean()
    base = np.bincount(cluster).max() / len(cluster)  # what popularity alone would give
    assert dominant > base + 0.2


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="corrupt_modality 'audio'"):
        import_synth(tmp_path / "x", corrupt_modality="audio", **SMALL)
    with pytest.raises(ConfigError, match="n_interactions"):
        import_synth(tmp_path / "x", **{**SMALL, "n_interactions": 300 * 200 + 1})


def test_corruption_leaves_every_clean_row_unchanged(tmp_path) -> None:
    kw = dict(
        n_users=60,
        n_items=40,
        n_interactions=600,
        modalities={"image": 8, "text": 6},
        seed=4,
        progress=False,
    )
    clean = load_dataset(import_synth(tmp_path / "clean", corrupt_fraction=0.0, **kw))
    bad = load_dataset(import_synth(tmp_path / "bad", corrupt_fraction=0.5, **kw))
    for m in ("image", "text"):
        ok = ~bad.corruption[m]
        np.testing.assert_array_equal(clean.features[m][ok], bad.features[m][ok])
        assert not np.allclose(clean.features[m][~ok], bad.features[m][~ok])


def _top_share(ds: Dataset, frac: float) -> float:
    """Share of all interactions held by the most popular ``frac`` of items."""
    pairs = np.concatenate([ds.train, ds.valid, ds.test])
    counts = np.sort(np.bincount(pairs[:, 1], minlength=ds.n_items))[::-1]
    return counts[: max(1, round(frac * ds.n_items))].sum() / counts.sum()


def test_defaults_are_unchanged_by_the_new_options(small: Dataset, tmp_path: Path) -> None:
    from trainer.data.importers.synth import POP_EXPONENT

    out = import_synth(
        tmp_path / "d", seed=3, popularity_skew=POP_EXPONENT, unnormalised=False, **SMALL
    )
    assert load_dataset(out).fingerprint == small.fingerprint


def test_popularity_skew_gives_heavy_tailed_items(small: Dataset, tmp_path: Path) -> None:
    zipf = load_dataset(import_synth(tmp_path / "z", seed=3, popularity_skew=1.5, **SMALL))
    assert len(zipf.train) + len(zipf.valid) + len(zipf.test) == 3000
    # the top 5% of items take a much larger share than under the default skew
    assert _top_share(zipf, 0.05) > _top_share(small, 0.05) + 0.15
    assert _top_share(zipf, 0.05) > 0.35
    with pytest.raises(ConfigError, match="popularity_skew"):
        import_synth(tmp_path / "bad", popularity_skew=-1.0, **SMALL)


def test_unnormalised_features_keep_structure_at_raw_scales(
    small: Dataset, tmp_path: Path
) -> None:
    raw = load_dataset(import_synth(tmp_path / "r", seed=3, unnormalised=True, **SMALL))
    # interactions and corruption are the same data; only feature scales differ
    np.testing.assert_array_equal(raw.train, small.train)
    assert raw.corruption is not None and small.corruption is not None
    np.testing.assert_array_equal(raw.corruption["image"], small.corruption["image"])
    for m in ("image", "text"):
        std = raw.features[m].std(axis=0)
        assert std.max() / std[std > 0].min() > 100, m  # columns over orders of magnitude
        # an affine map per column: standardising recovers the normalised features' columns
        a, b = raw.features[m], small.features[m]
        za = (a - a.mean(0)) / np.where(a.std(0) > 0, a.std(0), 1)
        zb = (b - b.mean(0)) / np.where(b.std(0) > 0, b.std(0), 1)
        np.testing.assert_allclose(za, zb, atol=2e-2)
    assert raw.features["image"].min() >= 0.0
    assert not np.allclose(np.linalg.norm(raw.features["text"], axis=1), 1.0, atol=1e-2)
