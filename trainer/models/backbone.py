"""The late-fusion multimodal graph backbone MARGO runs on (DRAGON-style, ALGORITHMS.md 1.2).

Follows DRAGON (Zhou et al., ECAI'23; hongyurain/DRAGON models/dragon.py) without its per-user
weights (A6): every channel is a separate 64-d block, and fusion is left to per-item weights.

    D1  H^m  = Lin2^m(LeakyReLU(Lin1^m(F^m)))                 [n_i, d]
    D2  X0^m = rowL2normalize([P^m ; H^m])                      [n_u + n_i, d]
    D3  X(l+1) = A_hat X(l), l = 0..L-1
    D4  Z^m  = sum_l X(l)^m
    D5  E_I^m = Z_I^m + S Z_I^m      (S: fixed kNN item graph, mixed or per channel)
    D6  E_U^m = Z_U^m + G Z_U^m      (G: fixed top-k co-occurrence user graph)

All channels are propagated together as one [n, M*d] matrix: one sparse product per layer.
The optional ``id`` channel (1.9) uses a free item embedding in place of H.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trainer.graphs import SparseOp
from trainer.knn import l2_normalize, search_arrays
from trainer.models.base import Recommender, xavier_embedding


def standardize_columns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """feature_norm "standardize": x' = (x - mu) * s with s = 1 / (sigma * sqrt(d)).

    Every column gets mean 0 and standard deviation 1 / sqrt(d), so a row has norm about 1
    whatever scale each column came with (features straight from an extractor); constant
    columns (sigma 0) become 0. Returns (x', mu, s), float32, mu and s of shape [d].
    """
    x = np.asarray(x, np.float64)
    mu, sigma = x.mean(0), x.std(0)
    s = np.where(sigma > 0, 1.0 / np.where(sigma > 0, sigma, 1.0), 0.0) / np.sqrt(x.shape[1])
    return ((x - mu) * s).astype(np.float32), mu.astype(np.float32), s.astype(np.float32)


# feature_norm "auto": a modality counts as unnormalised (as extracted: visual, acoustic) when
# its column scales spread widely, its columns sit on offsets far larger than their spread (every
# row then points the same way, so the cosine kNN graph is noise), or its rows are far from unit
# length (a linear projection then starts at that scale and swamps the ID channel). The real
# MMRec-layout sets stay far inside these bounds (spread <= 3.1, offset <= 0.5, row norm <= 1.8);
# synth --unnormalised is far outside (>= 1.5e3, 12, 9.9e3).
AUTO_SPREAD, AUTO_OFFSET, AUTO_ROW_NORM = 10.0, 10.0, 100.0


def unnormalised_reason(x: np.ndarray) -> str | None:
    """Why ``x`` [n, d] needs standardising under feature_norm "auto", or None if it does not.

    spread: 90th / 10th percentile of the non-constant columns' standard deviations; offset:
    median |column mean| / column std; scale: median row L2 norm.
    """
    x = np.asarray(x, np.float64)
    mu, sigma = x.mean(0), x.std(0)
    live = sigma > 0
    if not live.any():
        return None  # constant columns: standardising maps them to 0, nothing to gain
    lo, hi = np.quantile(sigma[live], [0.1, 0.9])
    stats = {
        "column-std spread": (hi / lo, AUTO_SPREAD),
        "column offset": (float(np.median(np.abs(mu[live]) / sigma[live])), AUTO_OFFSET),
        "row norm": (float(np.median(np.linalg.norm(x, axis=1))), AUTO_ROW_NORM),
    }
    bad = [f"{k} {v:.3g} > {t:g}" for k, (v, t) in stats.items() if v > t]
    return ", ".join(bad) or None


def raw_feature_layer(
    lin: nn.Linear,
    transform: nn.Module | None = None,
    affine: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The first projection layer as a map of the RAW feature, for cold start: (W, b) with
    W x + b = lin(T(s * (x - mu))) (T: SEA's linear T^m, if any; (mu, s): standardisation)."""
    w, b = lin.weight.detach().double().cpu(), lin.bias.detach().double().cpu()
    if transform is not None:  # a linear T^m folds in: W (Wt x + bt) + b
        tw, tb = transform.weight.detach().double().cpu(), transform.bias.detach().double().cpu()
        w, b = w @ tw, w @ tb + b
    if affine is not None:  # x' = s * (x - mu): W x' + b = (W s) x + (b - (W s) mu)
        mu, s = (torch.from_numpy(np.asarray(a, np.float64)) for a in affine)
        w = w * s[None, :]
        b = b - w @ mu
    return w.numpy().astype(np.float32), b.numpy().astype(np.float32)


def fold_in_feature_arrays(
    features: dict[str, torch.Tensor], affine: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Bundle arrays for a new item's kNN search (trainer/bundle_foldin.py): the L2-normalised
    rows the D5 graphs were built from, float16 (half the bytes; only near-ties between
    neighbours can change), and the standardisation (mu, s) that maps raw features there."""
    out: dict[str, np.ndarray] = {}
    for m, f in features.items():
        rows = l2_normalize(f.detach().cpu().numpy()).astype(np.float16)
        out[f"foldin_knn_{m}"] = rows
        prefilter = search_arrays(rows)  # wide features: a rank-64 prefilter of the search
        if prefilter is not None:
            out[f"foldin_basis_{m}"], out[f"foldin_low_{m}"] = prefilter["basis"], prefilter["low"]
        if m in affine:
            out[f"foldin_mu_{m}"] = np.asarray(affine[m][0], np.float32)
            out[f"foldin_scale_{m}"] = np.asarray(affine[m][1], np.float32)
    return out


class FeatureProjection(nn.Module):
    """D1: feature -> hidden -> d, the item node of one modality."""

    def __init__(self, in_dim: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(in_dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.leaky_relu(self.lin1(x)))


class GraphBackbone(Recommender):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        features: dict[str, torch.Tensor],
        adj: SparseOp,
        item_graphs: SparseOp | dict[str, SparseOp],
        user_graph: SparseOp,
        dim: int = 64,
        hidden: int = 256,
        n_layers: int = 2,
        id_channel: bool = False,
        user_graph_export: dict[str, np.ndarray] | None = None,
        input_affine: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        channels = [*features, *(["id"] if id_channel else [])]
        super().__init__(n_users, n_items, channels, dim)
        self.features = features  # fixed raw features, not parameters
        self.proj = nn.ModuleDict(
            {m: FeatureProjection(f.shape[1], hidden, dim) for m, f in features.items()}
        )
        self.preference = xavier_embedding(n_users, len(channels) * dim)  # P^m, all channels
        self.item_id = xavier_embedding(n_items, dim) if id_channel else None
        self.adj = adj
        self.item_graphs = item_graphs  # one mixed S, or {channel: S^m}
        self.user_graph = user_graph
        self.n_layers = n_layers
        self._user_graph_export = user_graph_export or {}
        self.input_affine = input_affine or {}  # standardisation (mu, s) the features had

    def item_nodes(self) -> torch.Tensor:
        """D1 for every channel: [n_i, M, d]."""
        nodes = [self.proj[m](self.content_feature(m, f)) for m, f in self.features.items()]
        if self.item_id is not None:
            nodes.append(self.item_id)
        return torch.stack(nodes, 1)

    def _propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """D2-D4: (Z_U [n_u, M*d], Z_I [n_i, M*d])."""
        m, d = len(self.channels), self.dim
        users = self.preference.view(self.n_users, m, d)
        x = F.normalize(torch.cat([users, self.item_nodes()], 0), dim=-1)  # D2 [n, M, d]
        x = x.reshape(-1, m * d)
        z = x
        for _ in range(self.n_layers):  # D3-D4
            x = self.adj(x)
            z = z + x
        return z[: self.n_users], z[self.n_users :]

    def _item_side(self, z_i: torch.Tensor) -> torch.Tensor:
        """D5: E_I [n_i, M, d]."""
        m, d = len(self.channels), self.dim
        if isinstance(self.item_graphs, dict):  # each channel over its own graph
            z_i3 = z_i.view(self.n_items, m, d)
            return torch.stack(
                [
                    z_i3[:, c] + self.item_graphs[ch](z_i3[:, c])
                    for c, ch in enumerate(self.channels)
                ],
                1,
            )
        return (z_i + self.item_graphs(z_i)).view(self.n_items, m, d)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        z_u, z_i = self._propagate()
        e_u = z_u + self.user_graph(z_u)  # D6
        return e_u.view(self.n_users, len(self.channels), self.dim), self._item_side(z_i)

    def batch_embeddings(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # D6 for the batch's users only: G has ~40 entries per user, and a batch holds about a
        # tenth of a Baby-sized user base, so the full product was ~10% of a training step
        z_u, z_i = self._propagate()
        uniq, inverse = torch.unique(users, return_inverse=True)
        rows = self.user_graph.rows(uniq.cpu().numpy())
        e_u = (z_u[uniq] + rows(z_u))[inverse]
        return e_u.view(-1, len(self.channels), self.dim), self._item_side(z_i)

    def reg_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """A4: sum_m mean(P^m[u]^2) over the batch users (DRAGON's regulariser)."""
        p = self.preference[users].view(users.shape[0], len(self.channels), self.dim)
        return p.pow(2).mean(dim=(0, 2)).sum()

    def export_extras(self) -> dict[str, np.ndarray]:
        out = {f"user_graph_{k}": v for k, v in self._user_graph_export.items()}
        t = dict(self.feature_transform.items()) if self.feature_transform is not None else {}
        for m, p in self.proj.items():  # cold start: a new item's layer-0 node from its feature
            # T^m and the standardisation fold into lin1 (same bundle format)
            w1, b1 = raw_feature_layer(p.lin1, t.get(m), self.input_affine.get(m))
            out[f"proj_{m}_w1"], out[f"proj_{m}_b1"] = w1, b1
            out[f"proj_{m}_w2"] = p.lin2.weight.detach().cpu().numpy().astype(np.float32)
            out[f"proj_{m}_b2"] = p.lin2.bias.detach().cpu().numpy().astype(np.float32)
        with torch.no_grad():  # fold-in (D5 for a new item): Z_I, the states S is applied to
            z_i = self._propagate()[1].view(self.n_items, len(self.channels), self.dim)
        out["foldin_state"] = z_i.float().cpu().numpy()
        return {**out, **fold_in_feature_arrays(self.features, self.input_affine)}

    def fold_in_spec(self) -> dict[str, object]:
        # a new item has no edges: Z = X0 = rowL2normalize(H) (D2-D4), then D5 E = Z + S Z
        return {"backbone": "dragon", "layer0": "l2", "self_scale": 1.0}
