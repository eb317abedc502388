"""A user's query vector from their interactions, with the item vectors held fixed.

The scoring space is the bundle's: y_ui = q_u . v_i (trainer/scoring.py), v_i fixed. A new
user (or a known user with interactions since training) gets q from the items they interacted
with, V_u = the rows v_i of those items ([n_u, D], D = M*d), c their confidences (1 each by
default). Methods (``method``; "auto", the default, is propagate where the bundle carries the
propagation parts, i.e. a FREEDOM model, and ridge otherwise):

    propagate  the model's own user step (trainer/foldin/propagation.py): q = s_u + sum_n c_n
           m_n / sqrt(sum c), m_i the item's message of F3's layer mean, s_u the user's own
           share (``user``: their row; none for a new user): FREEDOM's forward pass for the
           user with the new edges added, the items held fixed
    ridge  q0 = argmin ||c^1/2 (1 - V_u q)||^2 + alpha ||V (q - p')||^2 + lam ||q - p'||^2
              = (V_u^T C V_u + B)^-1 (V_u^T c + B p'),    B = alpha G + lam I, G = V^T V
           the implicit-ALS solve (Gram G computed once per bundle): the user's items are
           positives with target 1, every catalogue item a weak one (weight alpha, as iALS's
           1 / confidence) with target p' . v_i. p' is the prior: 0 for a new user; for a
           returning user their trained q rescaled so that it scores their items 1 on average
           (p' = p / mean_u(p . v_i)). lam is relative: lam * tr(G) / D. With a propagation
           bundle a prior without the user's row is folded this way.
    known  with ``prior_steps`` > 0 (off by default, see PRIOR_DEFAULTS), a returning user
           (``prior`` = their trained q, p) gets q = p + ``prior_steps`` full-batch BPR steps
           (below) from p itself, anchored at p (reg/2 ||q - p||^2), step size ``prior_lr``
           / mean ||v||^2, ``prior_negatives`` seeded negatives
    bpr    q = q0 + ``steps`` full-batch gradient steps of the BPR log-likelihood over the
           user's items against ``n_negatives`` items drawn once per call (seeded: the same
           input gives the same q), minus reg/2 ||q - p||^2; step size lr / mean ||v||^2.
    mean   the confidence-weighted mean of the items' v_i

``UserFoldIn.from_bundle(bundle)`` holds G, the factor of alpha G + lam I, the vectors and
their scale, so a ridge call is one small solve (Woodbury when n_u < D) plus the steps.

Measured on bench/freshness.py's splits (test R@20, mean over seeds 0-2, default margo + id
on FREEDOM; bench/results/freshness.md): users the model never saw, propagate vs the ridge:
mlsmall 0.257 vs 0.259 (validation 0.272 vs 0.274; retrained 0.275, popular 0.172),
synthetic 0.334 vs 0.327 (retrained 0.395): level within noise, at a quarter of the time and
no hyper-parameters. Returning users (all training rows posted, their row given): mlsmall
0.2928 vs the ridge with the trained prior 0.2896 (stale 0.2927, retrained 0.3121), synthetic
0.3504 vs 0.3404 (stale 0.3434, retrained 0.3884). The retrained model's lead is not in the
new edges: in the retrained model itself, dropping each returning user's held-back edges
from their own propagation moves test R@20 by 0.000 (seed 0: mlsmall 0.3007 -> 0.3010,
synthetic 0.3801 -> 0.3804); it is in parameters retrained on 25% more rows (P and the
items), which no fold with the items fixed reaches (30 BPR steps from the propagated q add
0.001-0.003). The ridge was chosen for DRAGON-era bundles on validation (mlsmall, 60
held-out users: 0.324 vs the mean of the items' v_i 0.222, BPR after it 0.311 at 10x cost).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from trainer.bundle import ModelBundle
from trainer.bundle_foldin import FoldInInputError
from trainer.foldin.cache import per_bundle
from trainer.foldin.propagation import UserPropagation, has_propagation

Method = Literal["auto", "propagate", "ridge", "bpr", "mean"]

DEFAULTS = {"alpha": 0.03, "lam": 1.0, "steps": 30, "lr": 0.1, "reg": 1e-3, "n_negatives": 256}
# a known user (prior given): BPR steps from their trained q (see the module docstring)
# prior_steps 0 by default: the BPR continuation recovered 72% of the stale -> retrained gap on
# mlsmall seed 0 but -1% +- 68% over seeds 0-2 in bench/results/freshness.md, at 20-100 ms a
# user (vs ~1 ms): folding every writer's users at that cost starved a serving process
# (bench/faults.py: recommendations fell from ~500 to ~10 req/s under a steady writer)
PRIOR_DEFAULTS = {"prior_steps": 0, "prior_lr": 4.0, "prior_negatives": 1024}


class UserInputError(FoldInInputError):
    """Bad input of one user of a ``fold_in_many`` batch: ``user`` is its position."""

    def __init__(self, user: int, cause: FoldInInputError) -> None:
        super().__init__(f"user {user}: {cause}", item=cause.item, modality=cause.modality)
        self.user = user


@dataclass(frozen=True)
class UserInput:
    """One user of ``UserFoldIn.fold_in_many``: ``fold_in``'s arguments."""

    item_rows: np.ndarray
    item_vectors: np.ndarray | None = None
    weights: np.ndarray | None = None
    prior: np.ndarray | None = None
    user: int | None = None  # the user's row in the bundle (a known user), for propagate


BATCH_USERS = 64
"""Users per batched solve at most (``fold_in_many``)."""
BATCH_ELEMENTS = 1 << 22
"""Padded interaction values (users x longest history x D) per batched solve at most: 32 MB
of float64 (a user with more is solved alone)."""


class UserFoldIn:
    """Per-bundle precomputation of user fold-in (the fixed item vectors and their Gram)."""

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        method: Method = "auto",
        alpha: float = DEFAULTS["alpha"],
        lam: float = DEFAULTS["lam"],
        steps: int = int(DEFAULTS["steps"]),
        lr: float = DEFAULTS["lr"],
        reg: float = DEFAULTS["reg"],
        n_negatives: int = int(DEFAULTS["n_negatives"]),
        seed: int = 0,
        prior_steps: int = PRIOR_DEFAULTS["prior_steps"],
        prior_lr: float = PRIOR_DEFAULTS["prior_lr"],
        prior_negatives: int = PRIOR_DEFAULTS["prior_negatives"],
    ) -> None:
        if method not in ("auto", "propagate", "ridge", "bpr", "mean"):
            raise ValueError(f"method must be auto, propagate, ridge, bpr or mean, not {method!r}")
        if method == "propagate" and not has_propagation(bundle):
            raise ValueError("method propagate needs a bundle with the propagation parts")
        if method == "auto":
            method = "propagate" if has_propagation(bundle) else "ridge"
        self.method = method
        self.n_users = bundle.n_users
        # float32 as the bundle holds them (100k x 192: 77 MB); sums in float64, by blocks
        self.vectors = np.ascontiguousarray(bundle.item_vectors(), np.float32)  # [I, D]
        self.n_items, self.dim = self.vectors.shape
        gram = np.zeros((self.dim, self.dim))
        for start in range(0, self.n_items, 8192):
            block = self.vectors[start : start + 8192].astype(np.float64)
            gram += block.T @ block
        self.lam = lam * max(float(np.trace(gram)) / self.dim, 1e-12)
        self.alpha = alpha
        base = alpha * gram + self.lam * np.eye(self.dim)
        self.base_inv = np.linalg.inv(base)  # symmetric positive definite: lam > 0
        self.base = base
        self.steps, self.reg, self.n_negatives, self.seed = steps, reg, n_negatives, seed
        sq = float(np.trace(gram)) / max(self.n_items, 1)  # mean ||v_i||^2
        self.lr = lr / max(sq, 1e-12)
        self.prior_steps, self.prior_negatives = prior_steps, prior_negatives
        self.prior_lr = prior_lr / max(sq, 1e-12)
        self.propagation = (
            UserPropagation(bundle, self.vectors) if method == "propagate" else None
        )

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> UserFoldIn:
        """The bundle's UserFoldIn with the default settings, built once per bundle object."""
        return per_bundle(_CACHE, bundle, lambda: cls(bundle))

    # -- input ------------------------------------------------------------------------------
    def positives(
        self, item_rows: np.ndarray, item_vectors: np.ndarray | None, weights: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(V_u [n_u, D], c [n_u], rows [n_u] of catalogue items, -1 for extra vectors)."""
        rows = np.asarray(item_rows if item_rows is not None else [], dtype=np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_items):
            j = int(np.flatnonzero((rows < 0) | (rows >= self.n_items))[0])
            raise FoldInInputError(
                f"item row {rows[j]} is not in the catalogue (0..{self.n_items - 1})", item=j
            )
        vu = self.vectors[rows].astype(np.float64)
        if item_vectors is not None:
            extra = np.asarray(item_vectors, np.float64)
            extra = extra[None, :] if extra.ndim == 1 else extra
            if extra.ndim != 2 or extra.shape[1] != self.dim:
                raise FoldInInputError(
                    f"item_vectors: expected [n, {self.dim}], got shape {extra.shape}"
                )
            if not np.isfinite(extra).all():
                j = int(np.argmax(~np.isfinite(extra).all(1)))
                raise FoldInInputError(f"item_vectors row {j}: NaN or inf", item=rows.size + j)
            vu = np.concatenate([vu, extra])
            rows = np.concatenate([rows, np.full(len(extra), -1)])
        if len(vu) == 0:
            raise FoldInInputError("a user fold-in needs at least one interaction")
        c = np.ones(len(vu)) if weights is None else np.asarray(weights, np.float64).ravel()
        if c.shape != (len(vu),) or not np.isfinite(c).all() or (c < 0).any():
            raise FoldInInputError(f"weights: expected {len(vu)} finite values >= 0")
        return vu, c, rows

    def check_prior(self, prior: np.ndarray | None) -> np.ndarray:
        if prior is None:
            return np.zeros(self.dim)
        p = np.asarray(prior, np.float64).ravel()
        if p.shape != (self.dim,) or not np.isfinite(p).all():
            raise FoldInInputError(f"prior: expected {self.dim} finite values")
        return p

    def check_user(self, user: int | None) -> int | None:
        if user is None:
            return None
        if not 0 <= int(user) < self.n_users:
            raise FoldInInputError(f"user row {user} is not in the model (0..{self.n_users - 1})")
        return int(user)

    def propagated(
        self, vu: np.ndarray, c: np.ndarray, rows: np.ndarray, raw: np.ndarray, user: int | None
    ) -> np.ndarray | None:
        """q of ``propagate`` (float64), or None where that method does not apply (another
        method, or a prior given without the user's row: the ridge folds it)."""
        if self.propagation is None or (user is None and raw.any()):
            return None
        msg = self.propagation.messages(rows[rows >= 0], vu[rows < 0])
        return self.propagation.fold(msg, c, user)

    # -- the fold-ins -------------------------------------------------------------------------
    def ridge(self, vu: np.ndarray, c: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """q0 = (V_u^T C V_u + B)^-1 (V_u^T c + B p'), B = alpha G + lam I; ``prior`` is p'."""
        rhs = vu.T @ c + self.base @ prior
        if len(vu) >= self.dim:
            return np.linalg.solve(vu.T @ (vu * c[:, None]) + self.base, rhs)
        # Woodbury with B^-1 precomputed: (B + U^T C U)^-1 = B^-1 - B^-1 U^T K^-1 U B^-1,
        # K = C^-1 + U B^-1 U^T; with c = 0 rows dropped first (they add nothing)
        keep = c > 0
        u, ck = vu[keep], c[keep]
        binv_rhs = self.base_inv @ rhs
        if not len(u):
            return binv_rhs
        ub = u @ self.base_inv  # [n, D]
        k = np.diag(1.0 / ck) + ub @ u.T
        return binv_rhs - ub.T @ np.linalg.solve(k, ub @ rhs)

    @staticmethod
    def scaled_prior(vu: np.ndarray, c: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """p' = p / s, s = the prior's mean score of the user's items (their target is 1);
        0 when the prior does not score them above 0 (it then says nothing usable)."""
        if not prior.any():
            return prior
        s = float(c @ (vu @ prior)) / max(float(c.sum()), 1e-12)
        return prior / s if s > 0 else np.zeros_like(prior)

    def bpr(
        self,
        q0: np.ndarray,
        vu: np.ndarray,
        c: np.ndarray,
        rows: np.ndarray,
        prior: np.ndarray,
        *,
        steps: int | None = None,
        lr: float | None = None,
        n_negatives: int | None = None,
    ) -> np.ndarray:
        """``steps`` full-batch BPR gradient steps from q0 against one seeded negative draw
        (steps, lr, n_negatives: the instance's bpr settings unless given)."""
        steps = self.steps if steps is None else steps
        lr = self.lr if lr is None else lr
        rng = np.random.default_rng(self.seed)
        n_neg = min(self.n_negatives if n_negatives is None else n_negatives, self.n_items)
        neg = rng.choice(self.n_items, n_neg, replace=False) if n_neg else np.empty(0, int)
        neg = neg[~np.isin(neg, rows)]  # the user's own items are not negatives
        if not len(neg):
            return q0
        vn = self.vectors[neg].astype(np.float64)
        weight = c / max(c.sum(), 1e-12)  # confidence-weighted mean over positives
        q = q0.copy()
        for _ in range(steps):
            # d/dq log sigma(q.v_p - q.v_n) = sigma(q.v_n - q.v_p) (v_p - v_n)
            z = (vn @ q)[None, :] - (vu @ q)[:, None]  # [n_u, n_neg]
            s = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigma(z) without overflow
            grad = ((weight * s.sum(1)) @ vu - (weight @ s) @ vn) / len(neg)
            q += lr * (grad - self.reg * (q - prior))
        return q

    def fold_in(
        self,
        item_rows: np.ndarray,
        *,
        item_vectors: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        prior: np.ndarray | None = None,
        user: int | None = None,
    ) -> np.ndarray:
        """The user's q [D] (float32); see the module docstring for the method."""
        vu, c, rows = self.positives(item_rows, item_vectors, weights)
        raw = self.check_prior(prior)
        q = self.propagated(vu, c, rows, raw, self.check_user(user))
        if q is not None:
            return q.astype(np.float32)
        if self.method == "mean":  # confidence-weighted mean of the items' vectors (no prior)
            return (c @ vu / max(c.sum(), 1e-12)).astype(np.float32)
        if raw.any() and self.prior_steps > 0:  # a known user: continue their training
            q = self.bpr(raw.copy(), vu, c, rows, raw, steps=self.prior_steps,
                         lr=self.prior_lr, n_negatives=self.prior_negatives)
            return q.astype(np.float32)
        p = self.scaled_prior(vu, c, raw)
        q = self.ridge(vu, c, p)
        if self.method == "bpr":
            q = self.bpr(q, vu, c, rows, p)
        return q.astype(np.float32)


    def fold_in_many(self, users: Sequence[UserInput]) -> np.ndarray:
        """Each user's ``fold_in`` ([len(users), D] float32, row n = user n), the ridge
        solved for many users at once: users sorted by interactions and padded into batches
        (zero-confidence rows, which add nothing), one stacked solve per batch; the same
        solution as ``fold_in`` user by user, without its per-user Python and LAPACK call
        overhead (a written batch of 100 users folds in one call). BPR steps, when
        configured, stay per user. Bad input: ``UserInputError`` naming the user."""
        out = np.empty((len(users), self.dim), np.float32)
        ridge: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (n, vu, c, p')
        for n, user in enumerate(users):
            try:
                vu, c, rows = self.positives(user.item_rows, user.item_vectors, user.weights)
                raw = self.check_prior(user.prior)
                row = self.check_user(user.user)
            except FoldInInputError as exc:
                raise UserInputError(n, exc) from exc
            q = self.propagated(vu, c, rows, raw, row)
            if q is not None:  # propagate: a gather and a sum per user, no solve
                out[n] = q
            elif self.method == "mean":
                out[n] = c @ vu / max(c.sum(), 1e-12)
            elif raw.any() and self.prior_steps > 0:  # continued training: per user
                out[n] = self.bpr(raw.copy(), vu, c, rows, raw, steps=self.prior_steps,
                                  lr=self.prior_lr, n_negatives=self.prior_negatives)
            elif self.method == "bpr":  # the ridge, then steps: per user
                p = self.scaled_prior(vu, c, raw)
                out[n] = self.bpr(self.ridge(vu, c, p), vu, c, rows, p)
            else:
                ridge.append((n, vu, c, self.scaled_prior(vu, c, raw)))
        for batch in self._batches(ridge):
            out[[n for n, *_ in batch]] = self._ridge_batch(batch)
        return out

    def _batches(
        self, todo: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]
    ) -> list[list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]]:
        """Users sorted by interactions, cut where the batch would hold BATCH_USERS, pad
        more than twice its shortest history, or exceed BATCH_ELEMENTS."""
        batches: list[list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]] = []
        for user in sorted(todo, key=lambda t: len(t[1])):
            n = len(user[1])
            cur = batches[-1] if batches else None
            if (
                cur is None
                or len(cur) >= BATCH_USERS
                or n > 2 * max(len(cur[0][1]), 1)
                or (len(cur) + 1) * n * self.dim > BATCH_ELEMENTS
            ):
                batches.append([user])
            else:
                cur.append(user)
        return batches

    def _ridge_batch(
        self, batch: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """``ridge`` of each user of ``batch`` ([k, D] float64), stacked."""
        k, longest = len(batch), max(len(vu) for _, vu, _, _ in batch)
        vp = np.zeros((k, longest, self.dim))
        cp = np.zeros((k, longest))
        prior = np.empty((k, self.dim))
        for j, (_, vu, c, p) in enumerate(batch):
            vp[j, : len(vu)], cp[j, : len(c)], prior[j] = vu, c, p
        rhs = np.einsum("knd,kn->kd", vp, cp) + prior @ self.base  # B is symmetric
        if longest >= self.dim:
            a = np.matmul((vp * cp[:, :, None]).transpose(0, 2, 1), vp) + self.base
            return np.linalg.solve(a, rhs[:, :, None])[:, :, 0]
        # Woodbury as in ``ridge``; a zero-confidence row (padding included) is a zero row
        # of U with 1 on K's diagonal: it decouples and its solution is 0
        live = cp > 0
        u = vp * live[:, :, None]
        ub = u @ self.base_inv  # [k, n, D]
        kmat = np.matmul(ub, u.transpose(0, 2, 1))
        diag = np.where(live, 1.0 / np.where(live, cp, 1.0), 1.0)
        kmat[:, np.arange(longest), np.arange(longest)] += diag
        binv_rhs = rhs @ self.base_inv
        t = np.linalg.solve(kmat, np.matmul(ub, rhs[:, :, None]))  # [k, n, 1]
        return binv_rhs - np.matmul(ub.transpose(0, 2, 1), t)[:, :, 0]


_CACHE: dict[int, tuple[weakref.ref, UserFoldIn]] = {}


def fold_in_user(
    bundle: ModelBundle,
    item_rows: np.ndarray,
    *,
    item_vectors: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    prior: np.ndarray | None = None,
    user: int | None = None,
) -> np.ndarray:
    """Query vector q [M*d] (float32) of a user who interacted with catalogue rows
    ``item_rows`` (and with the items whose fused vectors v are ``item_vectors`` [k, M*d],
    e.g. folded-in items), in ``bundle``'s scoring space: rank with q . v_i. e_u^m is
    ``q.reshape(M, d)[m]`` (q = concat_m e_u^m). ``weights``: one confidence >= 0 per
    interaction (rows first, then item_vectors); ``user``: a known user's row in the bundle
    (propagate: their own share s_u); ``prior``: the user's trained q, which the ridge folds
    towards (see the module docstring). Bad input raises ``FoldInInputError``.
    """
    return UserFoldIn.from_bundle(bundle).fold_in(
        item_rows, item_vectors=item_vectors, weights=weights, prior=prior, user=user
    )
