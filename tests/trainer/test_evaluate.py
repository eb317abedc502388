"""Training-time evaluation: the torch top-k fast path ranks like trainer/metrics.py."""

import numpy as np
import pytest
import torch

from trainer import metrics, scoring
from trainer.evaluate import evaluate_embeddings, topk_items


def _case(seed=0, n_users=40, n_items=60, m=2, d=3):
    rng = np.random.default_rng(seed)
    user = rng.normal(size=(n_users, m, d)).astype(np.float32)
    item = rng.normal(size=(n_items, m, d)).astype(np.float32)
    weights = rng.uniform(0.1, 1.0, size=(n_items, m)).astype(np.float32)
    pairs = np.stack([rng.integers(0, n_users, 600), rng.integers(0, n_items, 600)], 1)
    train = metrics.csr_from_pairs(pairs[:400], n_users, n_items)
    target = metrics.csr_from_pairs(pairs[400:], n_users, n_items)
    return user, item, weights, train, target


def test_torch_topk_equals_the_numpy_protocol():
    user, item, weights, train, target = _case()
    q, v = scoring.query_vectors(user), scoring.item_vectors(item, weights)
    users = metrics.users_with_targets(target)
    fast = topk_items(torch.from_numpy(q), torch.from_numpy(v), users, train, 20, batch=16)
    ref = metrics.full_ranking_topk(lambda ub: q[ub] @ v.T, users, train, 20, batch=16)
    np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("weighted", [True, False])
def test_evaluate_embeddings_equals_evaluate_vectors(weighted):
    user, item, weights, train, target = _case(seed=1)
    w = weights if weighted else None
    got = evaluate_embeddings(
        torch.from_numpy(user),
        torch.from_numpy(item),
        None if w is None else torch.from_numpy(w),
        train,
        target,
        ks=(5, 20),
    )
    ref = metrics.evaluate_vectors(
        scoring.query_vectors(user), scoring.item_vectors(item, w), train, target, ks=(5, 20)
    )
    assert got == pytest.approx(ref) and got["users"] > 0
