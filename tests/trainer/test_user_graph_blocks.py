"""The user co-occurrence graph built a block of rows at a time (bounded memory, issue 14) is
the graph of the whole product R R^T: equal arrays, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from trainer import graphs


def whole_product_graph(train_matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The computation before blocks (one product of every row): the reference."""
    r = train_matrix.astype(np.float32)
    c = (r @ r.T).tocoo()
    off = c.row != c.col
    rows, cols, cnt = c.row[off], c.col[off], c.data[off]
    n = train_matrix.shape[0]
    if rows.size == 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    order = np.lexsort((cols, -cnt, rows))
    rows, cols, cnt = rows[order], cols[order], cnt[order]
    first = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
    starts = np.repeat(first, np.diff(np.r_[first, rows.size]))
    keep = (np.arange(rows.size) - starts) < k
    rows, cols, cnt = rows[keep], cols[keep], cnt[keep].astype(np.float64)
    row_max = np.zeros(n)
    np.maximum.at(row_max, rows, cnt)
    e = np.exp(cnt - row_max[rows])
    denom = np.bincount(rows, weights=e, minlength=n)
    return sp.csr_matrix(((e / denom[rows]).astype(np.float32), (rows, cols)), shape=(n, n))


def assert_same_graph(a: sp.csr_matrix, b: sp.csr_matrix) -> None:
    a, b = a.tocsr(), b.tocsr()
    a.sort_indices()
    b.sort_indices()
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)  # bit for bit, not approximately


def random_train(seed: int, n_users: int, n_items: int, density: float) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density  # few items: many tied counts
    dense[rng.integers(n_users)] = False  # a user with no items: an empty row
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("block_entries", [1, 7, 50, 1000, 10**9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blocks_give_the_whole_product_graph(seed: int, block_entries: int) -> None:
    r = random_train(seed, n_users=60, n_items=12, density=0.2)
    for k in (1, 3, 10, 100):
        got = graphs.user_cooccurrence_graph(r, k, block_entries=block_entries)
        assert_same_graph(got, whole_product_graph(r, k))


def test_ties_go_to_the_lower_user_index_in_every_block() -> None:
    r = sp.csr_matrix(np.ones((6, 1), np.float32))  # every pair shares one item: all tied
    g = graphs.user_cooccurrence_graph(r, k=2, block_entries=1).toarray()
    assert g[0].tolist() == [0, 0.5, 0.5, 0, 0, 0]
    assert g[5].tolist() == [0.5, 0.5, 0, 0, 0, 0]


def test_one_item_shared_by_every_user_is_built_in_blocks() -> None:
    n = 3000  # the pathological shape: the whole product has n^2 entries
    rng = np.random.default_rng(3)
    dense = np.zeros((n, 40), np.float32)
    dense[:, 0] = 1.0
    dense[np.arange(n), rng.integers(1, 40, n)] = 1.0
    r = sp.csr_matrix(dense)
    blocks = graphs._row_blocks(r, 100_000)
    assert len(blocks) > 50 and blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(b - a <= 100_000 // n + 1 for a, b in blocks)  # bound: n entries per row
    got = graphs.user_cooccurrence_graph(r, 10, block_entries=100_000)
    assert_same_graph(got, whole_product_graph(r, 10))
    assert np.diff(got.indptr).tolist() == [10] * n


def test_no_users_and_no_shared_items() -> None:
    empty = sp.csr_matrix((0, 4), dtype=np.float32)
    assert graphs.user_cooccurrence_graph(empty, 3).shape == (0, 0)
    alone = sp.csr_matrix(np.eye(4, dtype=np.float32))
    g = graphs.user_cooccurrence_graph(alone, 3, block_entries=1)
    assert g.nnz == 0 and g.shape == (4, 4) and g.dtype == np.float32


@pytest.mark.parametrize("block_entries", [3, 10**9])
def test_weighted_interactions_give_the_whole_product_graph(block_entries: int) -> None:
    # non-integer counts take the general path (the integer fast path does not apply)
    r = random_train(4, n_users=50, n_items=10, density=0.3)
    r.data = np.random.default_rng(5).choice([0.5, 1.25, 2.0], r.nnz).astype(np.float32)
    for k in (1, 4, 60):
        got = graphs.user_cooccurrence_graph(r, k, block_entries=block_entries)
        assert_same_graph(got, whole_product_graph(r, k))
