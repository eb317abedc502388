"""Ranking metrics on hand-ranked examples, and the full-ranking protocol (trainer/metrics.py)."""

import math

import numpy as np
import pytest

from trainer.metrics import (
    csr_from_pairs,
    evaluate_scores,
    evaluate_vectors,
    full_ranking_topk,
    hit_matrix,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    topk_rows,
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
    q = np.array([[1.0], [-1.0]], np.float32)
    v = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    train = csr_from_pairs(np.array([[0, 3], [1, 0]]), 2, 4)  # each user's favourite is masked
    target = csr_from_pairs(np.array([[0, 2], [1, 3]]), 2, 4)
    m = evaluate_vectors(q, v, train, target, ks=(1, 2))
    # user 0 ranks 2, 1, 0 -> hit at rank 1; user 1 ranks 1, 2, 3 -> item 3 at rank 3
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@1"] == pytest.approx(0.5)
    assert m["users"] == 2


def test_users_without_targets_are_not_averaged():
    q = np.array([[1.0], [1.0]], np.float32)
    v = np.array([[1.0], [2.0]], np.float32)
    train = csr_from_pairs(np.zeros((0, 2), dtype=np.int64), 2, 2)
    target = csr_from_pairs(np.array([[0, 1]]), 2, 2)
    m = evaluate_vectors(q, v, train, target, ks=(1,))
    assert m["users"] == 1 and m["recall@1"] == 1.0


def test_no_user_to_evaluate_gives_zeros_not_nan():
    q, v = np.ones((2, 1), np.float32), np.ones((3, 1), np.float32)
    empty = csr_from_pairs(np.zeros((0, 2), dtype=np.int64), 2, 3)
    m = evaluate_vectors(q, v, empty, empty, ks=(2,))
    assert m == {"recall@2": 0.0, "ndcg@2": 0.0, "precision@2": 0.0, "map@2": 0.0, "users": 0.0}


def test_topk_rows_best_first_ties_in_column_order():
    scores = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf], [3.0, 2.0, 1.0, 0.0, 5.0]], np.float32)
    assert topk_rows(scores, 3).tolist() == [[1, 3, 2], [4, 0, 1]]
    assert topk_rows(scores, 5).tolist() == [[1, 3, 2, 0, 4], [4, 0, 1, 2, 3]]
    # ties at the k-th score: the lower columns are kept
    ties = np.array([[1.0, 2.0, 1.0, 1.0, 0.0], [-np.inf, -np.inf, 1.0, -np.inf, -np.inf]])
    assert topk_rows(ties, 3).tolist() == [[1, 0, 2], [2, 0, 1]]


def test_topk_rows_is_a_stable_descending_sort_cut_at_k():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(50, 40)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    for k in (1, 7, 39, 40):
        ref = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(topk_rows(scores, k), ref)


def test_full_ranking_topk_batches_and_masks():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(7, 9)).astype(np.float32)
    mask = csr_from_pairs(np.array([[0, int(scores[0].argmax())], [5, 1], [5, 2]]), 7, 9)
    users = np.array([0, 2, 5, 6])
    top = full_ranking_topk(lambda ub: scores[ub].copy(), users, mask, 4, batch=3)
    for n, u in enumerate(users):
        s = scores[u].copy()
        s[mask[u].indices] = -np.inf
        assert top[n].tolist() == np.argsort(-s, kind="stable")[:4].tolist()


def test_hit_matrix_by_hand():
    target = csr_from_pairs(np.array([[0, 2], [0, 5], [3, 1]]), 4, 6)
    top = np.array([[5, 1, 2], [1, 0, 4]])
    assert hit_matrix(top, np.array([0, 3]), target).tolist() == [
        [True, False, True],
        [True, False, False],
    ]


def test_evaluate_scores_equals_evaluate_vectors():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(20, 4)).astype(np.float32)
    v = rng.normal(size=(30, 4)).astype(np.float32)
    pairs = np.stack([rng.integers(0, 20, 120), rng.integers(0, 30, 120)], 1)
    train = csr_from_pairs(pairs[:80], 20, 30)
    target = csr_from_pairs(pairs[80:], 20, 30)
    a = evaluate_vectors(q, v, train, target, ks=(5, 10), batch=7)
    b = evaluate_scores(lambda ub: q[ub] @ v.T, 30, train, target, ks=(5, 10))
    assert a == b and a["users"] > 0


def test_metrics_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, trainer.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
