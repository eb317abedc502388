"""The fixed graphs of the backbone (D3, D5, D6) and the sparse operator's gradient."""

import numpy as np
import scipy.sparse as sp
import torch

from trainer import graphs


def test_normalized_adjacency_by_hand():
    # users 0, 1; items 0, 1; edges u0-i0, u0-i1, u1-i1
    a = graphs.normalized_adjacency(2, 2, np.array([[0, 0], [0, 1], [1, 1]])).toarray()
    # degrees: u0 2, u1 1, i0 1, i1 2 -> A[u0, i0] = 1/sqrt(2*1)
    np.testing.assert_allclose(a[0, [2, 3]], [1 / np.sqrt(2), 1 / 2], rtol=1e-6)
    np.testing.assert_allclose(a[1, 3], 1 / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(a, a.T)
    assert np.all(np.diag(a) == 0)


def test_knn_graph_includes_self_and_is_row_normalised():
    feats = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    s = graphs.knn_graph(feats, k=2).toarray()
    assert np.allclose(s.sum(1), 1.0)
    assert s[0, 0] == 0.5 and s[0, 1] == 0.5 and s[2, 3] == 0.5
    # an all-zero row still picks itself
    z = graphs.knn_graph(np.zeros((3, 2), np.float32), k=1).toarray()
    np.testing.assert_array_equal(z, np.eye(3))


def test_user_graph_keeps_top_k_with_softmax_over_counts():
    # user 0 shares 2 items with user 1 and 1 with user 2; user 3 shares nothing
    r = sp.csr_matrix(
        np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]], np.float32)
    )
    g = graphs.user_cooccurrence_graph(r, k=1).toarray()
    assert g[0].tolist() == [0, 1, 0, 0]  # top-1 only
    g2 = graphs.user_cooccurrence_graph(r, k=5).toarray()
    e = np.exp([2.0 - 2.0, 1.0 - 2.0])
    np.testing.assert_allclose(g2[0, [1, 2]], e / e.sum(), rtol=1e-6)
    assert g2[3].sum() == 0 and g2[0, 0] == 0


def test_default_graph_weights_follow_dragon():
    assert graphs.default_graph_weights(["image", "text"]) == {"image": 0.1, "text": 0.9}
    w = graphs.default_graph_weights(["meta", "text"])
    assert w == {"meta": 0.5, "text": 0.5}


def test_sparse_op_forward_and_gradient_match_dense():
    rng = np.random.default_rng(0)
    m = sp.random(6, 5, density=0.4, random_state=1, dtype=np.float32).tocsr()
    op = graphs.SparseOp(m)
    x = torch.tensor(rng.normal(size=(5, 3)), dtype=torch.float32, requires_grad=True)
    y = op(x)
    dense = torch.tensor(m.toarray())
    torch.testing.assert_close(y, dense @ x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, dense.T @ torch.ones(6, 3))


def test_sparse_op_rows_is_the_row_subset_with_its_gradient():
    rng = np.random.default_rng(0)
    m = sp.random(8, 5, density=0.5, random_state=2, dtype=np.float32).tocsr()
    op, rows = graphs.SparseOp(m), np.array([1, 4, 7])
    x = torch.tensor(rng.normal(size=(5, 3)), dtype=torch.float32, requires_grad=True)
    g = torch.tensor(rng.normal(size=(3, 3)), dtype=torch.float32)
    (op.rows(rows)(x) * g).sum().backward()
    sub_grad = x.grad.clone()
    x.grad = None
    full = op(x)
    torch.testing.assert_close(op.rows(rows)(x), full[rows])
    (full[rows] * g).sum().backward()
    torch.testing.assert_close(sub_grad, x.grad)
