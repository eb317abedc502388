"""The training-free content audit (trainer/audit.py) and ``margo audit``."""

import csv

import numpy as np
import pytest
import scipy.sparse as sp

from trainer.audit import content_consistency
from trainer.cli import main


def _by_hand(r: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The definition, one item at a time: Pearson over the other items' cosines."""

    def cos(x: np.ndarray) -> np.ndarray:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x @ x.T

    cf, fs = cos(r), cos(f)
    n = len(r)
    return np.array([np.corrcoef(np.delete(cf[i], i), np.delete(fs[i], i))[0, 1] for i in range(n)])


def test_matches_the_definition_in_any_chunking():
    rng = np.random.default_rng(0)
    r = (rng.random((12, 30)) < 0.3).astype(float)
    f = rng.normal(size=(12, 5))
    expected = _by_hand(r, f)
    for chunk in (1, 5, 100):
        got = content_consistency(sp.csr_matrix(r), f, chunk=chunk)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_swapped_content_scores_lower():
    """Items whose features were swapped with other items' look inconsistent."""
    rng = np.random.default_rng(1)
    n_items, n_users, k = 120, 400, 6
    topic = rng.integers(k, size=n_items)
    centres = rng.normal(size=(k, 16))
    f = centres[topic] + 0.3 * rng.normal(size=(n_items, 16))
    taste = rng.integers(k, size=n_users)
    likes = (topic[None, :] == taste[:, None]) & (rng.random((n_users, n_items)) < 0.3)
    noise = rng.random((n_users, n_items)) < 0.01
    r = (likes | noise).T.astype(float)  # [items, users]
    bad = rng.choice(n_items, 20, replace=False)
    swapped = f.copy()
    swapped[bad] = f[(bad + 7) % n_items]  # content of another item
    score = content_consistency(sp.csr_matrix(r), swapped)
    clean = np.setdiff1d(np.arange(n_items), bad)
    changed = bad[topic[bad] != topic[(bad + 7) % n_items]]  # a swap within a topic is harmless
    assert changed.size >= 10
    assert np.nanmean(score[changed]) < np.nanmean(score[clean]) - 0.2


def test_constant_rows_are_nan_and_bad_shapes_refused():
    r = sp.csr_matrix(np.array([[1, 0], [0, 0], [1, 1], [0, 1]], dtype=float))
    f = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.2]])
    assert np.isnan(content_consistency(r, f)[1])  # no interactions: nothing to compare
    with pytest.raises(ValueError, match="rows"):
        content_consistency(r, f[:3])


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_writes_the_ranked_csv(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "audit" / "report.csv"
    assert main(["audit", "--data", str(tiny_bundle), "--out", str(out), "--no-progress"]) == 0
    assert "most suspicious first" in capsys.readouterr().out
    rows = _read(out)
    assert len(rows) == 200 * 2 and {r["modality"] for r in rows} == {"image", "text"}
    # every row has a score and a confidence in [0, 1] (no empty cell, no nan), sorted by score
    values = [float(r["score"]) for r in rows]
    assert values == sorted(values) and all(0 <= v <= 1 for v in values)
    assert all(0 <= float(r["confidence"]) <= 1 for r in rows)
    # the audit's consistency is still there, as the "agreement" signal
    assert {"agreement", "cross_modal", "collab_from_content"} <= set(rows[0])
    # the fixture replaced 30% of image rows by noise: they dominate the top of the list
    from trainer.data import load_dataset

    data = load_dataset(tiny_bundle)
    noisy = set(np.asarray(data.item_ids)[data.corruption["image"]])
    top = [r["item_id"] for r in rows[:40] if r["modality"] == "image"]
    assert sum(i in noisy for i in top) >= 0.8 * len(top) > 0


def test_cli_with_a_bundle_adds_the_models_signals(tiny_bundle, tmp_path):
    model = tmp_path / "model"
    train = ["train", "--data", str(tiny_bundle), "--model", "margo", "--out", str(model)]
    assert main([*train, "--epochs", "2", "--quiet", "--threads", "1"]) == 0
    out = tmp_path / "a.csv"
    args = ["audit", "--data", str(tiny_bundle), "--bundle", str(model), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    rows = _read(out)
    assert len(rows) == 400 and {"bpr_reliability", "learned_weight"} <= set(rows[0])
    assert all(r["learned_weight"] for r in rows)  # a weight for every (item, modality)
    # the same score the bundle was exported with (trainer/export.py scores every bundle)
    from trainer.bundle import load_bundle

    rel = load_bundle(model).reliability
    assert rel is not None
    bundle = load_bundle(model)
    index = {i: k for k, i in enumerate(bundle.item_ids)}
    for r in rows:
        stored = rel.score[index[r["item_id"]], bundle.channels.index(r["modality"])]
        assert float(r["score"]) == pytest.approx(float(stored), abs=1e-6)


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    out = tmp_path / "a.csv"
    assert main(["audit", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "missing" in err
    assert not out.exists()


def test_cli_refuses_a_bundle_of_another_dataset(tiny_bundle, tmp_path, capsys):
    from trainer.bundle import write_bundle

    rng = np.random.default_rng(0)
    other = write_bundle(
        tmp_path / "other",
        manifest={"model": "margo", "channels": [{"name": "image"}, {"name": "text"}]},
        arrays={
            "user_emb": rng.normal(size=(3, 2, 2)).astype(np.float32),
            "item_emb": rng.normal(size=(4, 2, 2)).astype(np.float32),
            "item_weights": np.full((4, 2), 0.5, np.float32),
            "item_pos_count": np.arange(4, dtype=np.int32),
            "item_popularity": np.arange(4, dtype=np.int32) + 1,
            "seen_indptr": np.array([0, 2, 3, 3], np.int64),
            "seen_indices": np.array([0, 1, 3], np.int32),
        },
        user_ids=["u1", "u2", "u3"],
        item_ids=["a", "b", "c", "d"],
    )
    out = tmp_path / "a.csv"
    args = ["audit", "--data", str(tiny_bundle), "--bundle", str(other), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--bundle" in err and "4 items" in err
    assert not out.exists()
