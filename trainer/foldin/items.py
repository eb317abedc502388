"""New items from their features, without a retrain: the model's own item step, repeated.

A new item j with raw features f_j^m (the dataset's feature space) gets every channel the
way training would have given it one had it been in the catalogue with no interactions:

    x_j^m  = layer-0 node: H = D1(f_j^m) via the exported projection (standardisation and
             SEA's T^m folded in); DRAGON: x = rowL2normalize(H) (D2), FREEDOM: x = H (F1);
             the id channel: x = 0 (a new item has no id embedding)
    z_j    = self_scale * x_j: a node without edges propagates nothing (D3-D4: Z = X0;
             F3's layer mean: Z = X0 / (L + 1))
    N_m(j) = its k - 1 nearest catalogue items by cosine of the (standardised) features of
             modality m: with the item itself these are its k neighbours of D5's kNN graph
    e_j^c  = z_j^c + sum_m a_m^c / k (x_j^c + sum_{n in N_m(j)} g_n^c)       (D5 / F4)

g is the catalogue's state the item graph is applied to (DRAGON: Z_I, FREEDOM: X_I;
``foldin_state.npy``), a^c channel c's graph mixing (manifest ``fold_in.graphs``). So a new
item's id channel is the graph step's average of its content neighbours' id states: the id
channel's graph is the content kNN graph, and a new item has only that to go on.

The catalogue is held fixed: the new item does not enter its neighbours' lists (their
embeddings stay as trained), which is exactly training's result when no catalogue item has
the new one among its k nearest. The kNN features are stored as float16, so neighbours whose
similarities differ by less than ~1e-3 may swap. A modality whose rows exceed ``EXACT_BYTES``
as float32 (Baby's image features; 100k items) is searched through the bundle's rank-64
prefilter with an exact re-rank of 256 candidates: approximate (recall of the true 9
neighbours 0.998 on the 384-d text features of mlsmall and amazon-scientific; 0.55 on
4096-d synthetic rows dominated by noise, where neighbours are near-ties anyway);
``FoldedItems.search`` says which search each modality used, ``search="exact"`` forces a
full scan.

Measured (mlsmall-mmrec, default FREEDOM + id model, 150 warm items each folded in against
the catalogue without it): the folded v_j correlates 0.83 (median) with the trained one, but
the item reaches its validation users' top-20 for 0.3% of their interactions against 22%
with its trained vector: without interactions the item lacks what a trained item's edges
(and id embedding) add, r_i = Z_i - X_i / (L+1): its content channels' norm is the
catalogue's less r (mlsmall, FREEDOM: r is 0.45 / 0.48 of 3.0 / 2.8 in the content channels
and 1.13 of the id channel's 1.83), so it ranks below warm items. This exact step is
``placement="model"``. On FREEDOM bundles (which export r) the default is
``placement="edges"``: the step plus the mean r of its content neighbours, mixed as the item
graph mixes the modalities (trainer/foldin/propagation.py). bench/freshness.py, test, seeds
0-2: cold-item recall@20 mlsmall 0.019 vs 0.000 for "content" (the retrained model: 0.202;
chance 0.010), synthetic 0.282 vs 0.005 (0.386); users' warm-item R@20 at 99.3% / 95.2% of
without the new items, the retrained model's own 95.6% / 95.7%. Matching the imputed part's
norm to the neighbours' mean ||r|| (x ~1.06 content, ~2.4 id) raised mlsmall to 0.041 at
97.7% warm and synthetic to 0.319 at 93.9%: a trade of warm for cold, not the default.
Elsewhere ``placement="content"`` calibrates the step (placement.py: a ridge map content ->
trained embeddings, norms 0.8 x the content neighbours').
``FoldedItems.model_embeddings`` keeps the model step's e_j either way.

With interactions posted for the item (``users``, trainer/foldin/interactions.py; FREEDOM
bundles that export ``foldin_user_out``) it gets the model step plus the edges those users
give it, and an id node imputed from them, instead of any placement: bench/freshness.py
(seeds 0-2, d 64 / lr 1e-3 models), every training row on the new items posted, cold
recall@20 mlsmall 0.219 (features only 0.019, retrained 0.202), synthetic 0.442 (0.282,
0.386), at warm R@20 93.7% / 93.1% of without the new items (the retrained model's own
95.6% / 95.7%); R@20 over warm and new items' targets together 0.277 vs 0.266 features only
(synthetic 0.337 vs 0.327): the cold gain is paid partly by warm items.

Fusion weights w_j (Eq. 3) have no signal for a new item; the prior is
``"neighbours"``: sum_m abar_m mean_{n in N_m(j)} w_n, abar the channels' mean graph mixing
(what the model learned for items with similar content), or ``"catalogue"``: the mean w over
the catalogue. Unweighted models have w = 1 everywhere, so both give 1.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from trainer import scoring
from trainer.bundle import ModelBundle
from trainer.bundle_foldin import (
    FOLDIN_STATE,
    FoldInInputError,
    basis_name,
    fold_in_info,
    knn_name,
    low_name,
    mu_name,
    scale_name,
)
from trainer.foldin.cache import BundleBound, per_bundle
from trainer.foldin.interactions import ItemEdges, ItemUsers
from trainer.foldin.item_input import check_features
from trainer.foldin.placement import PLACEMENT_DEFAULTS, ContentPlacement
from trainer.foldin.propagation import impute_edges, item_edges
from trainer.knn import l2_normalize, nearest_rows, nearest_rows_prefiltered

WeightPrior = Literal["neighbours", "catalogue"]
# "auto" (default): "edges" where the bundle has the propagation parts (FREEDOM), else
# "content"; "edges": the model's step plus its content neighbours' edge parts (what their
# edges and id embeddings add, trainer/foldin/propagation.py); "content": the model's step,
# then trainer/foldin/placement.py's calibration; "model": the model's D1 + D5 step alone
# (the forward pass of an item without interactions)
Placement = Literal["auto", "edges", "content", "model"]
Search = Literal["auto", "exact", "prefilter"]
# a modality's kNN rows up to EXACT_BYTES as float32 are scanned exactly (Baby's 7050 x 384
# text rows, 11 MB: ~1-3 ms per item); wider ones (Baby's 4096-d image rows, 115 MB: a
# memory-bound 15-30 ms scan) go through the bundle's rank-64 prefilter, approximate
# (trainer.knn.nearest_rows_prefiltered); without one, up to CACHE_BYTES are scanned
EXACT_BYTES = 32 << 20
CACHE_BYTES = 256 << 20
PREFILTER_CANDIDATES = 256


@dataclass(frozen=True)
class FoldedItems:
    """New items placed in the model's scoring space (``n`` items, M channels, d dims)."""

    embeddings: np.ndarray  # float32 [n, M, d]  e_j^m
    weights: np.ndarray  # float32 [n, M]  w_j^m from the prior
    vectors: np.ndarray  # float32 [n, M*d]  v_j = concat_m w_j^m e_j^m (trainer.scoring)
    neighbours: dict[str, np.ndarray]  # modality -> int64 [n, k-1] catalogue rows, nearest first
    similarity: dict[str, np.ndarray]  # modality -> float32 [n, k-1] their cosine similarity
    weight_prior: str  # "neighbours" or "catalogue"
    search: dict[str, str]  # modality -> "exact" / "scan" (full scans) or "prefilter" (approx.)
    placement: str = "model"  # "edges", "content" (placement.py) or "model" (D1 + D5 only)
    model_embeddings: np.ndarray | None = None  # float32 [n, M, d]: the D1 + D5 step's e_j
    # int [n]: users whose posted interactions gave the item its edges (interactions.py;
    # those items are the model step plus them, whatever ``placement`` says); None: no users
    interactions: np.ndarray | None = None


class ItemFoldIn(BundleBound):
    """The per-bundle part of item fold-in (projections, states, kNN features), built once."""

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        search: Search = "auto",
        exact_bytes: int = EXACT_BYTES,
        cache_bytes: int = CACHE_BYTES,
        placement_lam: float = PLACEMENT_DEFAULTS["lam"],
        placement_scale: float = PLACEMENT_DEFAULTS["scale"],
    ) -> None:
        if search not in ("auto", "exact", "prefilter"):
            raise ValueError(f"search must be auto, exact or prefilter, not {search!r}")
        info = fold_in_info(bundle.manifest, bundle.path)
        arrays = bundle.arrays
        # weak: the per-bundle cache below must not keep a replaced bundle alive
        super().__init__(bundle)
        self.info = info
        self.channels = bundle.channels
        self.modalities = list(info.modalities)
        self.dims = {c.name: int(c.feature_dim or 0) for c in bundle.manifest.channels}
        self.k = min(info.knn_k, bundle.n_items + 1)  # D5's k = min(k, n) with the new item
        self.state = np.asarray(arrays[FOLDIN_STATE], np.float32)  # [I, M, d]
        self.item_weights = np.asarray(arrays["item_weights"], np.float32)
        self.proj = {
            m: [np.asarray(arrays[f"proj_{m}_{p}"], np.float32)
                for p in ("w1", "b1", "w2", "b2") if f"proj_{m}_{p}" in arrays]
            for m in self.modalities
        }
        self.affine = {
            m: (np.asarray(arrays[mu_name(m)], np.float32), np.asarray(arrays[scale_name(m)]))
            for m in self.modalities if info.standardized
        }
        # per modality: "exact" scans a float32 copy; past exact_bytes the bundle's low-rank
        # prefilter is used ("prefilter", approximate); without one, rows past cache_bytes
        # are scanned as stored, float16 block by block ("scan", exact but slow)
        self.knn: dict[str, np.ndarray] = {}
        self.basis = {m: np.asarray(arrays[basis_name(m)], np.float32)
                      for m in self.modalities if basis_name(m) in arrays}
        self.prefilter: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.search: dict[str, str] = {}
        for m in self.modalities:
            rows = arrays[knn_name(m)]
            wide = rows.size * 4 > exact_bytes
            if basis_name(m) in arrays and (search == "prefilter" or (search == "auto" and wide)):
                self.prefilter[m] = (np.asarray(arrays[basis_name(m)], np.float32),
                                     np.asarray(arrays[low_name(m)], np.float32))
                # the re-rank gathers candidate rows: float32 saves their conversion per call
                cached = rows.size * 4 <= cache_bytes
                self.knn[m] = np.asarray(rows, np.float32) if cached else rows
                self.search[m] = "prefilter"
            elif rows.size * 4 <= cache_bytes and search != "prefilter":
                self.knn[m], self.search[m] = np.asarray(rows, np.float32), "exact"
            else:
                self.knn[m], self.search[m] = rows, "scan"
        # a^c_m as a [M, modalities] matrix; abar for the weight prior (rows sum to 1)
        self.mix = np.array(
            [[info.graphs[c].get(m, 0.0) for m in self.modalities] for c in self.channels],
            dtype=np.float32,
        )
        mean_mix = self.mix.mean(0)
        self.prior_mix = mean_mix / mean_mix.sum() if mean_mix.sum() > 0 else mean_mix
        self.catalogue_weights = self.item_weights.mean(0)
        self.edges = item_edges(bundle)  # r [I, M, d] (FREEDOM bundles), or None
        self.placement = ContentPlacement(
            self.content_rows(), arrays["item_emb"], lam=placement_lam, scale=placement_scale
        )

    def content_rows(self) -> np.ndarray:
        """The catalogue's content x_n [I, p] (placement.py): the unit kNN rows, projected on
        the prefilter basis where the bundle has one (the same basis as ``content``)."""
        arrays = self.bundle.arrays
        return np.concatenate(
            [np.asarray(arrays[low_name(m)] if m in self.basis else self.knn[m], np.float32)
             for m in self.modalities], axis=1,
        )

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> ItemFoldIn:
        """The bundle's ItemFoldIn, built on first use and kept while the bundle lives."""
        return per_bundle(_CACHE, bundle, lambda: cls(bundle))

    # -- the steps -------------------------------------------------------------------------
    def layer0(self, x: dict[str, np.ndarray]) -> np.ndarray:
        """x_j per channel [n, M, d] (id channel 0)."""
        n = next(iter(x.values())).shape[0]
        nodes = np.zeros((n, len(self.channels), self.state.shape[2]), np.float32)
        for c, ch in enumerate(self.channels):
            if ch not in self.proj:
                continue
            p = self.proj[ch]
            h = x[ch] @ p[0].T + p[1]
            if len(p) == 4:  # D1: Lin2(LeakyReLU(Lin1 f)), torch's slope 0.01
                h = np.where(h > 0, h, np.float32(0.01) * h) @ p[2].T + p[3]
            nodes[:, c] = l2_normalize(h) if self.info.layer0 == "l2" else h
        return nodes

    def units(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """u_j^m: the standardised, L2-normalised features (the kNN search's queries)."""
        out = {}
        for m in self.modalities:
            q = x[m]
            if m in self.affine:
                mu, s = self.affine[m]
                q = (q - mu) * s
            out[m] = l2_normalize(q)
        return out

    def content(self, units: dict[str, np.ndarray]) -> np.ndarray:
        """x_j = concat_m u_j^m (B_m where the bundle has a prefilter basis), [n, p]."""
        return np.concatenate(
            [units[m] @ self.basis[m] if m in self.basis else units[m] for m in self.modalities],
            axis=1,
        )

    def neighbours(
        self, x: dict[str, np.ndarray], units: dict[str, np.ndarray] | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """N_m(j): the k - 1 nearest catalogue rows per modality, with their similarities."""
        units = self.units(x) if units is None else units
        out = {}
        for m in self.modalities:
            q = units[m]
            if m in self.prefilter:
                basis, low = self.prefilter[m]
                out[m] = nearest_rows_prefiltered(q, self.knn[m], self.k - 1, basis=basis,
                                                  low=low, n_candidates=PREFILTER_CANDIDATES)
            else:
                out[m] = nearest_rows(q, self.knn[m], self.k - 1)
        return out

    def fold_in(
        self,
        features: dict[str, np.ndarray],
        *,
        weight_prior: WeightPrior = "neighbours",
        placement: Placement = "auto",
        users: Sequence[ItemUsers] | None = None,
    ) -> FoldedItems:
        """Place the items whose raw features are ``features`` ([n, f_m] per modality);
        ``users`` (one per item) the interactions posted for them (interactions.py)."""
        if weight_prior not in ("neighbours", "catalogue"):
            raise FoldInInputError(f"weight_prior must be neighbours or catalogue, not "
                                   f"{weight_prior!r}")
        if placement not in ("auto", "edges", "content", "model"):
            raise FoldInInputError(f"placement must be auto, edges, content or model, not "
                                   f"{placement!r}")
        if placement == "auto":
            placement = "content" if self.edges is None else "edges"
        if placement == "edges" and self.edges is None:
            raise FoldInInputError("placement edges needs a bundle with the propagation parts")
        x = check_features(features, self.modalities, self.dims)
        if users is not None and len(users) != next(iter(x.values())).shape[0]:
            raise FoldInInputError(f"users: expected one entry per item "
                                   f"({next(iter(x.values())).shape[0]}), got {len(users)}")
        # checked before the search: bad users, or a bundle without n, fail fast
        edges = ItemEdges.from_bundle(self.bundle) if users is not None else None
        posted = edges.edges(users) if edges is not None else None
        nodes = self.layer0(x)
        if edges is not None and posted is not None and posted[1].any():
            live = posted[1] > 0  # items with users get an id node (interactions.py)
            id_nodes = edges.id_nodes(posted[0][live])
            if id_nodes is not None:
                nodes[live, edges.id_channel] = id_nodes
        units = self.units(x)
        nbrs = self.neighbours(x, units)
        emb = np.float32(self.info.self_scale) * nodes
        for j, m in enumerate(self.modalities):  # D5 / F4, all channels at once per modality
            rows = nbrs[m][0]
            hop = nodes + self.state[rows].sum(axis=1)  # the item itself + its neighbours
            emb += (self.mix[:, j] / np.float32(self.k))[None, :, None] * hop
        weights = self.prior(nbrs, len(emb), weight_prior)
        model_emb = emb.astype(np.float32)
        if placement == "edges":  # propagation.py: the neighbours' edge parts, S's mixing
            emb = emb + impute_edges(self.edges, [nbrs[m][0] for m in self.modalities], self.mix)
        elif placement == "content":  # placement.py: where the catalogue puts such content
            rows = np.concatenate([nbrs[m][0] for m in self.modalities], axis=1)
            sims = np.concatenate([nbrs[m][1] for m in self.modalities], axis=1)
            agree = np.min([np.einsum("nd,nkd->nk", units[m], np.asarray(self.knn[m][rows],
                            np.float32)) for m in self.modalities], axis=0)
            emb = self.placement(self.content(units), rows, sims, agree)
        if posted is not None:  # the model step plus the edges its users give it
            live = posted[1] > 0
            emb = emb.copy()
            emb[live] = model_emb[live] + posted[0][live].reshape(-1, *emb.shape[1:])
        return FoldedItems(
            embeddings=emb.astype(np.float32),
            weights=weights,
            vectors=scoring.item_vectors(emb, weights),
            neighbours={m: r for m, (r, _) in nbrs.items()},
            similarity={m: s for m, (_, s) in nbrs.items()},
            weight_prior=weight_prior,
            search=dict(self.search),
            placement=placement,
            model_embeddings=model_emb,
            interactions=None if posted is None else posted[1],
        )

    def prior(
        self, nbrs: dict[str, tuple[np.ndarray, np.ndarray]], n: int, kind: WeightPrior
    ) -> np.ndarray:
        """w_j from the documented prior, [n, M] float32."""
        if kind == "catalogue" or self.k <= 1:
            return np.broadcast_to(self.catalogue_weights, (n, len(self.channels))).copy()
        w = np.zeros((n, len(self.channels)), np.float32)
        for j, m in enumerate(self.modalities):
            w += self.prior_mix[j] * self.item_weights[nbrs[m][0]].mean(axis=1)
        return w


_CACHE: dict[int, tuple[weakref.ref, ItemFoldIn]] = {}


def fold_in_items(
    bundle: ModelBundle,
    features: dict[str, np.ndarray],
    *,
    weight_prior: WeightPrior = "neighbours",
    placement: Placement = "auto",
    users: Sequence[ItemUsers] | None = None,
) -> FoldedItems:
    """Fold ``n_new`` items into ``bundle``'s scoring space from their raw features.

    ``features``: modality -> float array [n_new, f_m] (a 1-d array is one item) for every
    content modality of the model, in the dataset's raw feature space. Raises
    ``FoldInInputError`` (a ValueError; ``.item``, ``.modality``) on bad input and
    ``FoldInUnavailable`` for a bundle without fold-in state. The bundle's precomputation
    is built on the first call and reused (``ItemFoldIn.from_bundle``). ``placement``:
    ``"edges"`` adds the content neighbours' edge parts to the model's step
    (trainer/foldin/propagation.py; the default where the bundle has them), ``"content"``
    calibrates the step (trainer/foldin/placement.py; the default otherwise), ``"model"``
    returns the model's D1 + D5 step alone. ``users``: per item, the interactions posted
    for it since training (``ItemUsers``; trainer/foldin/interactions.py): an item with any
    gets the model step plus the edges they give it; needs ``foldin_user_out`` in the bundle
    (``FoldInUnavailable`` otherwise).
    """
    return ItemFoldIn.from_bundle(bundle).fold_in(
        features, weight_prior=weight_prior, placement=placement, users=users
    )
