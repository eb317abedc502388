"""A new item's edges from the interactions posted for it (FREEDOM backbone; numpy only).

The mirror of the user fold (propagation.py). F3's layer mean splits by node on the item side
as on the user side (A_hat: a_ui = 1/sqrt(d_u d_i); the item's layer l+1 is the sum over its
users of a_ui times the user's layer l):

    Z_i = X_i / (L+1) + sum_{u in N(i)} n_u / sqrt(|N(i)|)
    n_u = sum_{l<L} (A^l X0)_u / (sqrt(d_u) (L+1))          (foldin_user_out, [U, M, d])

so a new item j whose interactions were posted after training, by users the model trained
(c: confidences, 1 each by default), gets the model's forward pass with those edges added
and the users held fixed:

    e_j = (model step)_j + sum_u c_u n_u / sqrt(sum_u c_u)

where the model step (items.py, ``placement="model"``: X_j / (L+1) + F4's hop S X_I over its
content neighbours) is what the item has without edges, and the sum replaces the imputed
edge part of ``placement="edges"`` (its content neighbours' mean r). For a catalogue item and
its training users the sum is exactly what its edges gave it, r_i less its id node's share
(tests/trainer/test_foldin_interactions.py).

The id node. A new item has no id embedding X_j^id (features-only: 0), which training would
learn from these same users. It is imputed from them as the catalogue relates the two: X_j^id
= t_j^id W, t^id the id channel of the users' sum above, W the ridge map t_i^id -> X_i^id fit
on the trained items (t_i^id = r_i^id - X_i^id / (L+1); ``ID_LAM``), and enters the model step
as a trained item's node does (its own X / (L+1) and its share of F4's hop). On mlsmall-mmrec
(seed 0, base model) an item's id edge part and its id node point the same way (median cosine
0.80) and the map explains 69% of held-out items' id nodes. Without it the posted items' id
channel is half as long as warm items' (norm 0.93 vs 1.83) and they rank low.

A user the model never trained (a folded user, known by its query q) sends n = q T_u, T_u the
ridge map q_u -> n_u fit on the trained users (lam relative to tr(Q^T Q) / D), as the user
fold maps a folded item's vector.

Users' own vectors do not move here (their new item is folded into them by the user fold,
users.py, through its vector), exactly as the user fold holds items fixed.

Catalogue items with new users (``ItemEdges.update_items``): the same sum with the users
added, e_i' = e_i - t_i + (sqrt(d_i) t_i + sum_u c_u n_u) / sqrt(d_i + sum c), t_i what its
training users gave it. This is why the user fold alone recovers little of the stale ->
retrained gap of returning users: a user's new interactions also change the items they touch
(their edges gain the user), and every user of those items gains from it. bench/freshness.py,
seed 0, all held-back rows posted: synthetic test R@20 stale 0.332, user fold 0.341, user fold
+ item update 0.376, graph refresh (trainer/foldin/refresh.py) 0.374, retrained 0.380 (91% of
the gap vs 20% and 88%); stale users with updated items alone 0.369. mlsmall 0.301 / 0.302 /
0.308 / 0.305 (retrained 0.301: no gap in that run). Served (``updated_catalogue``): after
each write the service recomputes the written users' catalogue items from all their users
since training and scores them exactly beside its fixed FAISS index (service/fresh/sync.py);
bench/freshness.py's arm calls the same function.

Bundles exported before ``foldin_user_out`` lack n; ``user_out_from_graph`` computes it from
the bundle's parts and the pairs the model trained on (the caller's: a bundle records every
interaction of its dataset as ``seen``, not which of them it trained on), and ``with_user_out``
gives such a bundle the array (bench/freshness.py does, for stores exported before it).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trainer.bundle import ModelBundle
from trainer.bundle_foldin import (
    FOLDIN_STATE,
    ITEM_EDGES,
    USER_OUT,
    USER_SELF,
    FoldInInputError,
    FoldInUnavailable,
    fold_in_info,
)
from trainer.foldin.cache import BundleBound, per_bundle
from trainer.foldin.propagation import has_propagation
from trainer.foldin.refresh import normalized_graph

MAP_LAM = 1.0  # ridge of the folded-user map q -> n, relative to tr(Q^T Q) / D
# ridge of the id-node map t^id -> X^id, relative to tr(T^T T) / d: the best fit to held-out
# catalogue items (mlsmall-mmrec seed-0 base model, 20% of its items held out: R^2 0.69 at
# 0.01, 0.66 at 0.1, 0.49 at 1; predicted norms 83% / 72% / 49% of the true ones)
ID_LAM = 0.01


@dataclass(frozen=True)
class ItemUsers:
    """The interactions posted for one new item: users the model trained (rows) and users
    it did not (their query vectors q, [k, M*d]); ``weights``: a confidence >= 0 each,
    rows first, then vectors."""

    user_rows: np.ndarray
    user_vectors: np.ndarray | None = None
    weights: np.ndarray | None = None


def has_user_out(bundle: ModelBundle) -> bool:
    """Whether the bundle can fold items from their interactions."""
    return has_propagation(bundle) and USER_OUT in bundle.arrays


def user_out_from_graph(bundle: ModelBundle, train_pairs: np.ndarray) -> np.ndarray:
    """n [U, M, d] float32 from the bundle's parts (P_u / (L+1), X_I) and ``train_pairs``
    (int [n, 2] of bundle rows: user, item), the pairs the model trained on."""
    if not has_propagation(bundle):
        raise FoldInUnavailable(f"{bundle.path}: item fold-in from interactions needs the "
                                "propagation parts (a FREEDOM model exported with this version)")
    layers = int(round(1.0 / fold_in_info(bundle.manifest, bundle.path).self_scale)) - 1
    n_u, n_i = bundle.n_users, bundle.n_items
    pairs = np.asarray(train_pairs, np.int64).reshape(-1, 2)
    if len(pairs) and ((pairs.min(0) < 0).any() or (pairs.max(0) >= [n_u, n_i]).any()):
        raise FoldInInputError(f"pairs must hold user rows < {n_u} and item rows < {n_i}")
    arrays = bundle.arrays
    shape = arrays["item_emb"].shape[1:]
    x = np.vstack([np.asarray(arrays[USER_SELF], np.float64).reshape(n_u, -1) * (layers + 1),
                   np.asarray(arrays[FOLDIN_STATE], np.float64).reshape(n_i, -1)])
    adj = normalized_graph(n_u, n_i, pairs)
    acc = x[:n_u].copy()
    for _ in range(layers - 1):  # layers 1 .. L-1 of the users
        x = adj @ x
        acc += x[:n_u]
    deg = np.diff(adj.indptr)[:n_u].astype(np.float64)  # distinct items of each user
    acc /= (np.sqrt(np.maximum(deg, 1.0)) * (layers + 1))[:, None]
    return acc.reshape(n_u, *shape).astype(np.float32)


def with_user_out(bundle: ModelBundle, train_pairs: np.ndarray) -> ModelBundle:
    """The bundle, with ``foldin_user_out`` computed from ``train_pairs`` if it lacks it."""
    if USER_OUT in bundle.arrays:
        return bundle
    out = user_out_from_graph(bundle, train_pairs)
    return dataclasses.replace(bundle, arrays={**bundle.arrays, USER_OUT: out},
                               _user_index={}, _item_index={})


class ItemEdges(BundleBound):
    """sum_u c_u n_u / sqrt(sum c) for one bundle (n, and the map for folded users, once)."""

    def __init__(self, bundle: ModelBundle, *, lam: float = MAP_LAM) -> None:
        if not has_user_out(bundle):
            raise FoldInUnavailable(
                f"{bundle.path}: no {USER_OUT}.npy (a FREEDOM bundle exported before item "
                "fold-in from interactions, or another backbone): items fold from features only")
        self.n_users = bundle.n_users
        self.out = np.asarray(bundle.arrays[USER_OUT], np.float32).reshape(self.n_users, -1)
        self.dim = self.out.shape[1]
        super().__init__(bundle)
        self._lam = lam
        self._map: np.ndarray | None = None  # built on the first folded user
        channels = bundle.channels
        self.id_channel = channels.index("id") if "id" in channels else None
        self.shape = tuple(bundle.arrays["item_emb"].shape[1:])
        self._id_map: np.ndarray | None = None  # built on the first item with users

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> ItemEdges:
        """The bundle's ItemEdges, built on first use and kept while the bundle lives."""
        return per_bundle(_CACHE, bundle, lambda: cls(bundle))

    def vector_map(self) -> np.ndarray:
        """T_u [D, D] = (Q^T Q + lam tr(Q^T Q)/D I)^-1 Q^T N over the trained users."""
        if self._map is None:
            queries = np.asarray(self.bundle.query_vectors(), np.float32)
            gram, cross = np.zeros((self.dim, self.dim)), np.zeros((self.dim, self.dim))
            for start in range(0, self.n_users, 8192):  # float64 sums by blocks
                q = queries[start : start + 8192].astype(np.float64)
                gram += q.T @ q
                cross += q.T @ self.out[start : start + 8192].astype(np.float64)
            ridge = self._lam * max(float(np.trace(gram)) / self.dim, 1e-12)
            self._map = np.linalg.solve(gram + ridge * np.eye(self.dim), cross)
        return self._map

    def id_map(self) -> np.ndarray:
        """W [d, d] = (T^T T + lam tr(T^T T)/d I)^-1 T^T X^id over the catalogue: t_i^id =
        r_i^id - X_i^id / (L+1), the id channel of what its users gave item i."""
        if self._id_map is None:
            arrays, c = self.bundle.arrays, self.id_channel
            scale = fold_in_info(self.bundle.manifest, self.bundle.path).self_scale
            x = np.asarray(arrays[FOLDIN_STATE][:, c], np.float64)
            t = np.asarray(arrays[ITEM_EDGES][:, c], np.float64) - scale * x
            gram = t.T @ t
            ridge = ID_LAM * max(float(np.trace(gram)) / len(gram), 1e-12)
            self._id_map = np.linalg.solve(gram + ridge * np.eye(len(gram)), t.T @ x)
        return self._id_map

    def id_nodes(self, edges: np.ndarray) -> np.ndarray | None:
        """X_j^id [n, d] float32 of new items from their edge parts [n, M*d] (``edges``), or
        None for a model without an id channel."""
        if self.id_channel is None:
            return None
        t = np.asarray(edges, np.float64).reshape(len(edges), *self.shape)[:, self.id_channel]
        return (t @ self.id_map()).astype(np.float32)

    def check(self, users: ItemUsers, item: int) -> tuple[np.ndarray, np.ndarray]:
        """(messages n [k, D] float64, confidences c [k]) of one item's users; FoldInInputError
        naming the item on bad input."""
        rows = np.asarray(users.user_rows if users.user_rows is not None else [],
                          np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_users):
            bad = int(rows[(rows < 0) | (rows >= self.n_users)][0])
            raise FoldInInputError(
                f"item {item}: user row {bad} is not in the model (0..{self.n_users - 1})",
                item=item)
        msg = self.out[rows].astype(np.float64)
        if users.user_vectors is not None:
            q = np.asarray(users.user_vectors, np.float64)
            q = q[None, :] if q.ndim == 1 else q
            if q.ndim != 2 or q.shape[1] != self.dim or not np.isfinite(q).all():
                raise FoldInInputError(
                    f"item {item}: user_vectors must be finite [k, {self.dim}], got shape "
                    f"{q.shape}", item=item)
            if len(q):
                msg = np.concatenate([msg, q @ self.vector_map()])
        c = (np.ones(len(msg)) if users.weights is None
             else np.asarray(users.weights, np.float64).ravel())
        if c.shape != (len(msg),) or not np.isfinite(c).all() or (c < 0).any():
            raise FoldInInputError(f"item {item}: weights: expected {len(msg)} finite values "
                                   ">= 0", item=item)
        return msg, c

    def trained_edges(self, rows: np.ndarray | None = None) -> np.ndarray:
        """t [I, M*d] float64 (or of ``rows`` only: a served write reads no more than the
        items it updates): what each catalogue item's training users gave it (r_i less its
        id node's share, X_i^id / (L+1))."""
        arrays = self.bundle.arrays
        pick = slice(None) if rows is None else np.asarray(rows, np.int64)
        t = np.array(arrays[ITEM_EDGES][pick], np.float64)
        if self.id_channel is not None:
            scale = fold_in_info(self.bundle.manifest, self.bundle.path).self_scale
            t[:, self.id_channel] -= scale * np.asarray(
                arrays[FOLDIN_STATE][pick][:, self.id_channel], np.float64)
        return t.reshape(len(t), -1)

    def update_items(self, item_rows: np.ndarray, users: Sequence[ItemUsers]) -> np.ndarray:
        """e_i' [k, M, d] float32 of catalogue items ``item_rows`` with new users ``users``
        (one ItemUsers each: users who were not among the item's training users), the users
        held fixed: e_i' = e_i - t_i + (sqrt(d_i) t_i + sum_u c_u n_u) / sqrt(d_i + sum c),
        d_i the item's training positives (``item_pos_count``: distinct users where the
        training pairs are distinct, as in MMRec's splits)."""
        rows = np.asarray(item_rows, np.int64).ravel()
        n_items = self.bundle.n_items
        if rows.shape != (len(users),) or (rows.size and (rows.min() < 0 or rows.max()
                                                          >= n_items)):
            raise FoldInInputError(f"item_rows: one catalogue row (0..{n_items - 1}) per "
                                   f"entry of users ({len(users)})")
        arrays = self.bundle.arrays
        t = self.trained_edges(rows)
        deg = np.asarray(arrays["item_pos_count"][rows], np.float64)
        sums = np.zeros_like(t)
        total = np.zeros(len(rows))
        for j, u in enumerate(users):
            msg, c = self.check(u, j)
            sums[j], total[j] = c @ msg, c.sum()
        new_t = (np.sqrt(deg)[:, None] * t + sums) / np.sqrt(np.maximum(deg + total, 1.0))[:, None]
        emb = np.asarray(arrays["item_emb"][rows], np.float64).reshape(len(rows), -1)
        return (emb - t + new_t).reshape(len(rows), *self.shape).astype(np.float32)

    def edges(self, users: Sequence[ItemUsers]) -> tuple[np.ndarray, np.ndarray]:
        """(edge parts [n, D] float32, users counted [n] int: those with confidence > 0)
        of n items; an item without any posted user gets 0 and count 0."""
        out = np.zeros((len(users), self.dim), np.float32)
        counts = np.zeros(len(users), np.int64)
        for j, u in enumerate(users):
            msg, c = self.check(u, j)
            total = float(c.sum())
            if total > 0:
                out[j] = c @ msg / np.sqrt(total)
                counts[j] = int((c > 0).sum())
        return out, counts


def posted_users(users: ItemUsers) -> int:
    """How many users ``users`` holds (rows and vectors)."""
    rows = 0 if users.user_rows is None else np.asarray(users.user_rows).size
    vectors = 0 if users.user_vectors is None else len(np.atleast_2d(users.user_vectors))
    return rows + vectors


def updated_catalogue(
    bundle: ModelBundle, posted: Mapping[int, ItemUsers]
) -> tuple[np.ndarray, np.ndarray]:
    """(item rows, ascending; e' [k, M, d] float32) of the catalogue items in ``posted`` (item
    row -> the users who interacted with it since training and were not among its training
    users) that have any user: ``ItemEdges.update_items``, the one computation the service
    serves (service/fresh/sync.py, after each write) and bench/freshness.py evaluates. Their
    vectors are ``trainer.scoring.item_vectors(e', item_weights[rows])``: the weights stay."""
    keep = sorted(r for r, u in posted.items() if posted_users(u))
    rows = np.asarray(keep, np.int64)
    if not keep:
        return rows, np.zeros((0, *bundle.arrays["item_emb"].shape[1:]), np.float32)
    return rows, ItemEdges.from_bundle(bundle).update_items(rows, [posted[r] for r in keep])


_CACHE: dict[int, tuple[weakref.ref, ItemEdges]] = {}
