"""Fixed graphs built once before training (ALGORITHMS.md 1.2, D3, D5, D6).

Everything is vectorised: no Python loops over users, items or edges.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from trainer.knn import default_graph_weights, knn_graph, mixed_item_graph

__all__ = [
    "SparseOp",
    "csr_arrays",
    "default_graph_weights",
    "degree_sensitive_pruning",
    "knn_graph",
    "mixed_item_graph",
    "normalized_adjacency",
    "user_cooccurrence_graph",
]


def normalized_adjacency(n_users: int, n_items: int, train: np.ndarray) -> sp.csr_matrix:
    """D3: A_hat = D^-1/2 A D^-1/2 of the bipartite train graph (no self loops).

    Nodes are users 0..n_users-1 then items. Returns float32 CSR [(n_u+n_i), (n_u+n_i)].
    """
    n = n_users + n_items
    u = train[:, 0].astype(np.int64)
    i = train[:, 1].astype(np.int64) + n_users
    rows = np.concatenate([u, i])
    cols = np.concatenate([i, u])
    a = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n, n))
    a.sum_duplicates()
    a.data[:] = 1.0
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.zeros_like(deg, dtype=np.float32)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    d = sp.diags(inv)
    return (d @ a @ d).tocsr().astype(np.float32)


def degree_sensitive_pruning(
    n_users: int, n_items: int, train: np.ndarray, prune_ratio: float, rng: np.random.Generator
) -> sp.csr_matrix:
    """FREEDOM's degree-sensitive edge pruning of the user-item graph, renormalised (F3).

    Degree rule: of the E distinct training edges, int((1 - prune_ratio) * E) are kept, drawn
    without replacement with probability proportional to 1 / sqrt(d_u d_i) (degrees of the
    full graph), so edges between popular nodes are the first to go. The kept graph is
    normalised again as D^-1/2 A D^-1/2 with the kept degrees (``normalized_adjacency``).
    Returns float32 CSR [(n_u+n_i), (n_u+n_i)]; ``prune_ratio`` 0 gives the full graph.
    """
    if not 0.0 <= prune_ratio < 1.0:
        raise ValueError(f"prune_ratio must be in [0, 1), got {prune_ratio}")
    edges = np.unique(train[:, :2].astype(np.int64), axis=0)
    if prune_ratio == 0.0:
        return normalized_adjacency(n_users, n_items, edges)
    deg_u = np.bincount(edges[:, 0], minlength=n_users)
    deg_i = np.bincount(edges[:, 1], minlength=n_items)
    weight = 1.0 / np.sqrt(deg_u[edges[:, 0]] * deg_i[edges[:, 1]])
    n_keep = int(len(edges) * (1.0 - prune_ratio))
    # weighted sampling without replacement (Efraimidis-Spirakis): the n_keep largest
    # keys log(U)/w, one vectorised draw in place of n_keep sequential ones
    keys = np.log(rng.random(len(edges))) / weight
    kept = np.argpartition(-keys, n_keep - 1)[:n_keep] if n_keep > 0 else np.empty(0, np.int64)
    return normalized_adjacency(n_users, n_items, edges[np.sort(kept)])


USER_GRAPH_BLOCK_ENTRIES = 4_000_000
"""Most co-occurrence entries held at once while the user graph is built (about 50 bytes each
with the sort): R R^T is made a block of rows at a time, so a popular item shared by 20,000
users costs ~200 MB, not the 18 GB of the whole product."""


def user_cooccurrence_graph(
    train_matrix: sp.csr_matrix, k: int, *, block_entries: int = USER_GRAPH_BLOCK_ENTRIES
) -> sp.csr_matrix:
    """D6: G[u, top-k co-occurrence users] = softmax over their co-occurrence counts.

    Built once and deterministically (ties broken by user index), no padding; users without
    any co-occurring user get an empty row. Returns float32 CSR [n_users, n_users].

    Rows are independent, so the counts R R^T are computed a block of rows at a time
    (``_row_blocks``), each block's top k kept and the rest dropped: peak memory about
    ``block_entries`` + users x k entries, and the same graph as one whole product (each row
    sees the same counts, sorted and summed in the same order).
    """
    r = train_matrix.astype(np.float32).tocsr()
    rt = r.T.tocsr()
    n = r.shape[0]
    parts = [_top_k_softmax(r[a:b] @ rt, a, k) for a, b in _row_blocks(r, block_entries)]
    if not parts:
        return sp.csr_matrix((n, n), dtype=np.float32)
    rows, cols, vals = (np.concatenate(p) for p in zip(*parts, strict=True))
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float32)


def _row_blocks(r: sp.csr_matrix, max_entries: int) -> list[tuple[int, int]]:
    """Consecutive row ranges [a, b) whose rows of R R^T hold at most ``max_entries`` entries
    together (a single row over it is a block of its own). Row u holds at most
    min(n_users, sum of the degrees of u's items) entries: a bound known without the product."""
    n = r.shape[0]
    item_degree = np.bincount(r.indices, minlength=r.shape[1]).astype(np.int64)
    reach = np.r_[0, np.cumsum(item_degree[r.indices])]
    per_row = np.minimum(reach[r.indptr[1:]] - reach[r.indptr[:-1]], n)
    total = np.r_[0, np.cumsum(per_row)]  # total[u] = entries of rows < u
    blocks, a = [], 0
    while a < n:  # one step per block, not per user
        b = int(np.searchsorted(total, total[a] + max_entries, side="right")) - 1
        b = min(max(b, a + 1), n)
        blocks.append((a, b))
        a = b
    return blocks


def _top_k_softmax(
    counts: sp.spmatrix, first_row: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, weights) of the top k off-diagonal counts of each row of a block of R R^T
    starting at user ``first_row`` (ties to the lower column), softmax-normalised per row."""
    c = counts.tocsr()
    c.sort_indices()  # columns ascending within each row: the order ties are broken in
    m = c.shape[0]
    local = np.repeat(np.arange(m), np.diff(c.indptr))
    cols, cnt = c.indices.astype(np.int64), c.data
    off = local + first_row != cols
    local, cols, cnt = local[off], cols[off], cnt[off]
    keep = _top_k_mask(local, cnt, k, m)
    local, cols, cnt = local[keep], cols[keep], cnt[keep]
    # the kept entries (at most k per row) in (row, count descending, column) order, so each
    # row's softmax sums in one fixed order
    order = np.lexsort((cols, -cnt, local))
    local, cols, cnt = local[order], cols[order], cnt[order].astype(np.float64)
    # softmax per row over raw counts, stabilised by the row maximum
    row_max = np.zeros(m)
    np.maximum.at(row_max, local, cnt)
    e = np.exp(cnt - row_max[local])
    denom = np.bincount(local, weights=e, minlength=m)
    return local + first_row, cols, (e / denom[local]).astype(np.float32)


def _top_k_mask(local: np.ndarray, cnt: np.ndarray, k: int, m: int) -> np.ndarray:
    """Which entries are among their row's k largest counts, ties going to the earlier entry.

    Entries come grouped by row (``local``, ascending) with columns ascending within a row.
    Only the counts are sorted, not the entries: each row's k-th largest count t is its
    threshold; every count above t is kept, and of those equal to t the first ones in column
    order, as many as k leaves room for.
    """
    if local.size == 0:
        return np.zeros(0, bool)
    sizes = np.bincount(local, minlength=m)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    integral = cnt.max() < 2**24 and cnt.min() >= 0 and bool(np.all(cnt == np.floor(cnt)))
    if integral and m < 2**28:  # one float key (row, count descending), exact below 2^53
        key = np.sort(local * 2.0**25 + (2.0**24 - cnt))
        by_row = 2.0**24 - (key - np.floor(key / 2.0**25) * 2.0**25)
    else:
        by_row = cnt[np.lexsort((-cnt, local))]
    has = sizes > 0
    threshold = np.full(m, np.inf)
    threshold[has] = by_row[(starts + np.minimum(sizes, k) - 1)[has]]
    t = threshold[local]
    above, tie = cnt > t, cnt == t
    room = k - np.bincount(local, weights=above, minlength=m).astype(np.int64)
    ties = np.cumsum(tie)
    before = np.r_[0, ties][starts]  # ties in earlier rows
    return above | (tie & (ties - before[local] <= room[local]))


class SparseOp:
    """A fixed sparse matrix applied as ``op(x) = M @ x`` with autograd w.r.t. the dense x.

    Torch's COO ``sparse.mm`` backward transposes and coalesces on every call; keeping CSR
    copies of M and M^T makes forward and backward one CSR product each (about 4x faster
    on CPU).
    """

    def __init__(self, m: sp.spmatrix, device: str | torch.device = "cpu") -> None:
        self.shape = m.shape
        self.csr = m.tocsr()  # host copy: row subsets are cut from it (``rows``)
        self.device = torch.device(device)
        self.matrix = _torch_csr(self.csr, device)
        self.transpose = _torch_csr(self.csr.T.tocsr(), device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _SparseMatmul.apply(x, self)

    def rows(self, index: np.ndarray) -> SparseOp:
        """The operator of rows ``index`` only: ``op.rows(r)(x) == op(x)[r]``, at a fraction of
        the cost when few rows are needed (a training batch's users)."""
        return SparseOp(self.csr[index], self.device)

    def transposed(self) -> SparseOp:
        """``M^T`` as an operator, sharing this one's two torch CSR copies (only the host CSR
        that ``rows`` cuts from is transposed)."""
        op = SparseOp.__new__(SparseOp)
        op.shape, op.csr, op.device = self.shape[::-1], self.csr.T.tocsr(), self.device
        op.matrix, op.transpose = self.transpose, self.matrix
        return op

    def to(self, device: str | torch.device) -> SparseOp:
        self.device = torch.device(device)
        self.matrix = self.matrix.to(device)
        self.transpose = self.transpose.to(device)
        return self


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, op: SparseOp) -> torch.Tensor:  # type: ignore[override]
        ctx.op = op
        return op.matrix @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return ctx.op.transpose @ grad, None


def _torch_csr(m: sp.csr_matrix, device: str | torch.device) -> torch.Tensor:
    m.sort_indices()
    with (
        warnings.catch_warnings()
    ):  # "CSR support is in beta": forward/backward products are all we use
        warnings.simplefilter("ignore", UserWarning)
        return _csr_tensor(m, device)


def _csr_tensor(m: sp.csr_matrix, device: str | torch.device) -> torch.Tensor:
    return torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(np.int64)),
        torch.from_numpy(m.indices.astype(np.int64)),
        torch.from_numpy(m.data.astype(np.float32)),
        size=m.shape,
        device=device,
        check_invariants=False,  # built from a canonical scipy CSR just above
    )


def csr_arrays(m: sp.spmatrix) -> dict[str, np.ndarray]:
    """CSR parts as plain arrays (int64 indptr, int32 indices, float32 data) for export."""
    csr = m.tocsr()
    return {
        "indptr": csr.indptr.astype(np.int64),
        "indices": csr.indices.astype(np.int32),
        "data": csr.data.astype(np.float32),
    }
