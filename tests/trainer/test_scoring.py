"""The scoring identity (ALGORITHMS.md 1.8) and its per-modality terms, by hand."""

import numpy as np
import pytest

from trainer.scoring import item_vectors, modality_terms, query_vectors, scores

# 1 user, 2 items, 2 modalities of dimension 2
E_U = np.array([[[1.0, 2.0], [0.0, -1.0]]], np.float32)  # [U=1, M=2, d=2]
E_I = np.array([[[3.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [2.0, -2.0]]], np.float32)  # [I=2, 2, 2]
W = np.array([[0.5, 2.0], [1.0, 0.25]], np.float32)  # [I, M]


def test_fold_by_hand():
    assert query_vectors(E_U).tolist() == [[1.0, 2.0, 0.0, -1.0]]
    assert item_vectors(E_I, W).tolist() == [[1.5, 0.0, 2.0, 2.0], [0.0, 1.0, 0.5, -0.5]]
    assert item_vectors(E_I, None).tolist() == E_I.reshape(2, 4).tolist()


def test_identity_by_hand():
    # item 0: 0.5 * (1*3 + 2*0) + 2 * (0*1 - 1*1) = 1.5 - 2 = -0.5
    # item 1: 1 * (0 + 2) + 0.25 * (0 + 2) = 2.5
    assert scores(E_U, E_I, W).tolist() == [[-0.5, 2.5]]


def test_identity_is_the_weighted_sum_of_modality_scores():
    rng = np.random.default_rng(0)
    u, i = rng.normal(size=(3, 2, 4)), rng.normal(size=(5, 2, 4))
    w = rng.uniform(size=(5, 2))
    ref = (np.einsum("umd,imd->uim", u, i) * w[None]).sum(-1)
    np.testing.assert_allclose(scores(u, i, w), ref, rtol=1e-5, atol=1e-5)


def test_modality_terms_by_hand():
    t = modality_terms(E_U[0], E_I, W, item_vectors(E_I, W))
    assert t.similarity.tolist() == [[3.0, -1.0], [2.0, 2.0]]
    assert t.weight.tolist() == [[0.5, 2.0], [1.0, 0.25]]
    assert t.contribution.tolist() == [[1.5, -2.0], [2.0, 0.5]]
    assert t.score.tolist() == [-0.5, 2.5]
    assert t.share[0].tolist() == pytest.approx([1.5 / 3.5, -2.0 / 3.5])
    assert t.share[1].tolist() == pytest.approx([0.8, 0.2])
    assert t.top_modality.tolist() == [0, 0]


def test_zero_contributions_have_zero_share():
    t = modality_terms(np.zeros((2, 2), np.float32), E_I, W, item_vectors(E_I, W))
    assert t.share.tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_scoring_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, trainer.scoring; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
