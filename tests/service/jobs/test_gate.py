"""The activation gate: the rule, and bundle evaluation checked against a direct computation
and against the trainer's own validation metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.jobs.gate import GateDecision, evaluate_bundle
from tests.service.factories import item_id, make_bundle, user_id
from trainer.bundle import load_bundle
from trainer.data import load_dataset
from trainer.data.dataset import Dataset


def test_the_rule() -> None:
    assert GateDecision(new=0.98, active=1.0, tolerance=0.02).passed
    assert not GateDecision(new=0.979, active=1.0, tolerance=0.02).passed
    assert GateDecision(new=0.5, active=0.5, tolerance=0.0).passed
    assert GateDecision(new=0.0, active=None, tolerance=0.02).passed
    text = GateDecision(new=0.3, active=0.4, tolerance=0.02).explain()
    assert "0.3000" in text and "0.4000" in text and "fails" in text


def toy_dataset(n_users: int, n_items: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = {(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, 6, replace=False)}
    rows_arr = np.array(sorted(rows), dtype=np.int64)
    label = np.tile([0, 0, 0, 0, 1, 1], len(rows_arr) // 6 + 1)[: len(rows_arr)]
    users = [user_id(u) for u in range(n_users)] + ["stranger"]
    stranger = np.array([[n_users, 0], [n_users, 1]])
    return Dataset(
        name="toy",
        n_users=n_users + 1,
        n_items=n_items + 1,  # one item the bundle does not know
        train=np.concatenate([rows_arr[label == 0], stranger[:1]]),
        valid=np.concatenate([rows_arr[label == 1], stranger[1:]]),
        test=np.empty((0, 2), np.int64),
        features={},
        user_ids=users,
        item_ids=[item_id(i) for i in range(n_items)] + ["unknown-item"],
        item_meta=None,
        fingerprint="toy",
    )


def test_evaluate_bundle_matches_a_direct_computation(tmp_path: Path) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "b", n_users=30, n_items=50, seed=3))
    data = toy_dataset(30, 50, seed=4)
    got = evaluate_bundle(bundle, data)
    # direct: known users by q.v over known items, the stranger by popularity
    q, v = bundle.query_vectors(), bundle.item_vectors()
    recalls = []
    for u in range(data.n_users):
        target = set(data.valid[data.valid[:, 0] == u, 1].tolist())
        if not target:
            continue
        scores = np.full(data.n_items, -np.inf)
        if u < 30:
            scores[:50] = q[u] @ v.T
        else:
            scores[:50] = bundle.arrays["item_popularity"]
        scores[data.train[data.train[:, 0] == u, 1]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:20]
        assert 50 not in top  # the unknown item is never recommended
        recalls.append(len(target & set(top.tolist())) / len(target))
    assert got["recall@20"] == pytest.approx(np.mean(recalls))
    assert got["users"] == len(recalls)


def test_evaluate_bundle_equals_the_trainers_validation_metric(
    tiny_model: tuple[Path, Path],
) -> None:
    data_dir, bundle_dir = tiny_model
    bundle = load_bundle(bundle_dir)
    got = evaluate_bundle(bundle, load_dataset(data_dir))
    trained = bundle.manifest.metrics["valid"]["recall@20"]
    assert got["recall@20"] == pytest.approx(trained, abs=1e-6)
