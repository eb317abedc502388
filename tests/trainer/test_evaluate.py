"""Training-time evaluation: the torch top-k fast path ranks like trainer/metrics.py."""

import numpy as np
import pytest
import torch

from trainer import metrics, scoring
from trainer.evaluate import evaluate_embeddings, evaluate_vectors, topk_items


def _case(seed=0, n_users=40, n_items=60, m=2, d=3):
    rng = np.random.default_rng(seed)
    user = rng.normal(size=(n_users, m, d)).astype(np.float32)
    item = rng.normal(size=(n_items, m, d)).astype(np.float32)
    weights = rng.uniform(0.1, 1.0, size=(n_items, m)).astype(np.float32)
    # disjoint training and target pairs, as a split gives: masked items (-inf, which fill
    # the lists of users with fewer than k unmasked items, in no defined order) never hit
    cells = rng.permutation(n_users * n_items)[:600]
    pairs = np.stack([cells // n_items, cells % n_items], 1)
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


def test_fast_evaluate_vectors_equals_the_numpy_protocol():
    user, item, weights, train, target = _case(seed=2)
    q, v = scoring.query_vectors(user), scoring.item_vectors(item, weights)
    got = evaluate_vectors(q, v, train, target, ks=(1, 10, 50), batch=9)
    assert got == metrics.evaluate_vectors(q, v, train, target, ks=(1, 10, 50), batch=9)
    assert got["users"] > 0
