"""Ranking metrics on hand-ranked examples, and the full-ranking evaluator."""

import math

import numpy as np
import pytest
import torch

from trainer.evaluate import (
    csr_from_pairs,
    evaluate_vectors,
    fold_vectors,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

# user 0: relevant items at ranks 1 and 3 of 4 relevant; user 1: rank 2 of 1 relevant
HITS = np.array([[1, 0, 1, 0], [0, 1, 0, 0]], dtype=bool)
N_REL = np.array([4, 1])


def test_recall_and_precision_by_hand():
    assert recall_at_k(HITS, N_REL, 3).tolist() == [0.5, 1.0]
    assert recall_at_k(HITS, N_REL, 1).tolist() == [0.25, 0.0]
    assert precision_at_k(HITS, N_REL, 2).tolist() == [0.5, 0.5]


def test_ndcg_by_hand():
    dcg0 = 1 + 1 / math.log2(4)
    idcg0 = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # min(4, 3) = 3 ideal hits
    got = ndcg_at_k(HITS, N_REL, 3)
    assert got[0] == pytest.approx(dcg0 / idcg0)
    assert got[1] == pytest.approx((1 / math.log2(3)) / 1.0)


def test_map_by_hand():
    # user 0: (1/1 + 2/3) / min(4, 3); user 1: (1/2) / 1
    got = map_at_k(HITS, N_REL, 3)
    assert got[0] == pytest.approx((1 + 2 / 3) / 3)
    assert got[1] == pytest.approx(0.5)


def test_ranking_metrics_keys_and_means():
    m = ranking_metrics(HITS, N_REL, [1, 3])
    assert m["recall@3"] == pytest.approx(0.75)
    assert set(m) == {f"{n}@{k}" for n in ("recall", "ndcg", "precision", "map") for k in (1, 3)}


def test_evaluate_vectors_masks_training_items_and_scores_exactly():
    # 2 users, 4 items, 1-d scores: user 0 prefers high item index, user 1 low
    q = torch.tensor([[1.0], [-1.0]])
    v = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    train = csr_from_pairs(np.array([[0, 3], [1, 0]]), 2, 4)  # each user's favourite is masked
    target = csr_from_pairs(np.array([[0, 2], [1, 3]]), 2, 4)
    m = evaluate_vectors(q, v, train, target, ks=(1, 2))
    # user 0 ranks 2, 1, 0 -> hit at rank 1; user 1 ranks 1, 2, 3 -> item 3 at rank 3
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@1"] == pytest.approx(0.5)
    assert m["users"] == 2


def test_users_without_targets_are_not_averaged():
    q = torch.tensor([[1.0], [1.0]])
    v = torch.tensor([[1.0], [2.0]])
    train = csr_from_pairs(np.zeros((0, 2), dtype=np.int64), 2, 2)
    target = csr_from_pairs(np.array([[0, 1]]), 2, 2)
    m = evaluate_vectors(q, v, train, target, ks=(1,))
    assert m["users"] == 1 and m["recall@1"] == 1.0


def test_fold_vectors_is_the_weighted_score():
    torch.manual_seed(0)
    u, i = torch.randn(3, 2, 4), torch.randn(5, 2, 4)
    w = torch.softmax(torch.randn(5, 2), -1)
    q, v = fold_vectors(u, i, w)
    ref = (torch.einsum("umd,imd->uim", u, i) * w[None]).sum(-1)
    torch.testing.assert_close(q @ v.T, ref)
