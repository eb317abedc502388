"""Model bundle format 2: the optional reliability score per (item, modality) round-trips,
a bundle without it (format 2 or format 1) loads and says why it has none, and a bundle with
half of it or values outside [0, 1] is refused."""

import json
import re

import numpy as np
import pytest

from trainer.bundle import (
    FORMAT_VERSION,
    RELIABILITY_CONFIDENCE,
    RELIABILITY_SCORE,
    load_bundle,
    write_bundle,
)
from trainer.bundle_reliability import NO_RELIABILITY, PRE_RELIABILITY
from trainer.errors import BundleError

from .test_bundle import _arrays

METHOD = {"signals": ["audit", "cross_modal"], "combiner": {"coef": [0.5, -1.25]}, "seed": 3}
CHANNELS = [{"name": "image"}, {"name": "text"}]


def _reliability(n_items=4, m=2):
    score = np.array([[0.0, 1.0], [0.25, 0.5], [0.75, 0.125], [1.0, 0.0]])[:n_items, :m]
    return {RELIABILITY_SCORE: score, RELIABILITY_CONFIDENCE: 1.0 - score / 2}


def _write(path, *, reliability=None, manifest_extra=None):
    arrays = _arrays()
    if reliability is not None:
        arrays.update(reliability)
    return write_bundle(
        path,
        manifest={"model": "margo", "channels": CHANNELS, **(manifest_extra or {})},
        arrays=arrays,
        user_ids=["u1", "u2", "u3"],
        item_ids=["a", "b", "c", "d"],
    )


def test_the_score_round_trips_as_float32_with_its_method(tmp_path):
    given = _reliability()  # float64 in: stored as float32
    extra = {"reliability": {"method": METHOD}}
    path = _write(tmp_path / "b", reliability=given, manifest_extra=extra)
    bundle = load_bundle(path)
    assert bundle.manifest.format_version == FORMAT_VERSION >= 2  # the score since format 2
    rel = bundle.reliability
    assert rel is not None and bundle.reliability_absent is None
    assert rel.score.dtype == rel.confidence.dtype == np.float32
    np.testing.assert_array_equal(rel.score, given[RELIABILITY_SCORE].astype(np.float32))
    np.testing.assert_array_equal(rel.confidence, given[RELIABILITY_CONFIDENCE].astype(np.float32))
    assert rel.method == METHOD
    assert bundle.manifest.sha256(f"{RELIABILITY_SCORE}.npy")
    # memory-mapped loading (the service's) sees the same values
    mapped = load_bundle(path, mmap=True).reliability
    np.testing.assert_array_equal(np.asarray(mapped.score), rel.score)


def test_a_bundle_without_the_score_loads_and_says_why(tmp_path):
    plain = load_bundle(_write(tmp_path / "plain"))
    assert plain.reliability is None and plain.reliability_absent == NO_RELIABILITY
    why = "model bpr has no content modality to score"
    told = load_bundle(_write(tmp_path / "told", manifest_extra={"reliability_absent": why}))
    assert told.reliability is None and told.reliability_absent == why


def test_a_format_1_bundle_loads_and_says_it_predates_the_score(tmp_path):
    path = _write(tmp_path / "v1")
    raw = json.loads((path / "manifest.json").read_text())
    raw["format_version"] = 1
    for key in ("reliability", "reliability_absent"):
        raw.pop(key, None)
    (path / "manifest.json").write_text(json.dumps(raw))
    bundle = load_bundle(path)
    assert bundle.manifest.format_version == 1
    assert bundle.reliability is None and bundle.reliability_absent == PRE_RELIABILITY
    assert "format 1" in PRE_RELIABILITY


@pytest.mark.parametrize(
    ("arrays", "extra", "words"),
    [
        ("score only", {"reliability": {"method": METHOD}}, "without item_reliability_confidence"),
        ("both", {}, "without the manifest's reliability record"),
        ("none", {"reliability": {"method": METHOD}}, "without item_reliability.npy"),
        ("wrong shape", {"reliability": {"method": METHOD}}, "shape (4, 1), expected (4, 2)"),
        ("above 1", {"reliability": {"method": METHOD}}, "in [0, 1]"),
        ("nan", {"reliability": {"method": METHOD}}, "in [0, 1]"),
    ],
)
def test_half_a_score_or_values_outside_0_1_are_refused(tmp_path, arrays, extra, words):
    rel = _reliability()
    if arrays == "score only":
        rel.pop(RELIABILITY_CONFIDENCE)
    elif arrays == "none":
        rel = {}
    elif arrays == "wrong shape":
        rel = {k: v[:, :1] for k, v in rel.items()}
    elif arrays == "above 1":
        rel[RELIABILITY_SCORE][2, 1] = 1.5
    elif arrays == "nan":
        rel[RELIABILITY_CONFIDENCE][0, 0] = np.nan
    with pytest.raises(BundleError, match=re.escape(words)):
        _write(tmp_path / "b", reliability=rel, manifest_extra=extra)
    assert not (tmp_path / "b").exists()  # refused before anything became visible
