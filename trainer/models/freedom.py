"""A FREEDOM-style backbone with one channel per modality (Zhou & Shen, MM'23, "A Tale of Two
Graphs: Freezing and Denoising Graph Structures for Multimodal Recommendation").

FREEDOM freezes the item-item kNN graph built from the raw features and prunes the user-item
graph by degree at every epoch; it scores with one fused ID vector. Here every channel stays a
separate d-block, so fusion-sum / fusion-learned / MARGO, the reliability weights, the bundle's
scoring identity q_u . v_i and per-channel explanations apply unchanged:

    F1  X_I^m = Lin^m(F^m)                  content channel m (one linear map, FREEDOM's
                                            image_trs / text_trs); X_I^id = free item table
    F2  X0^m  = [P^m ; X_I^m]                P^m: free user preference of channel m
    F3  Z^m   = 1/(L+1) sum_l A~^l X0^m       LightGCN layer mean; A~ = the degree-pruned graph
                                            (graphs.degree_sensitive_pruning, redrawn every
                                            epoch) in training, the full A_hat in evaluation
    F4  e_i^m = Z_I^m + S^m X_I^m            S^m: frozen kNN item graph (mixed or per channel),
        e_u^m = Z_U^m                        one hop on the layer-0 item nodes, as FREEDOM

Compared with the DRAGON-style backbone there is no user-user graph and the feature
projection is one linear map, which is what makes an epoch cheaper. FREEDOM's auxiliary BPR
terms on the raw projections are not needed: the content channels are scored directly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainer.graphs import SparseOp, degree_sensitive_pruning
from trainer.models.backbone import fold_in_feature_arrays, raw_feature_layer
from trainer.models.base import Recommender, xavier_embedding
from trainer.models.fixed_linear import FixedInputProjection


class FreedomBackbone(Recommender):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        features: dict[str, torch.Tensor],
        train: np.ndarray,
        adj: SparseOp,
        item_graphs: SparseOp | dict[str, SparseOp],
        dim: int = 64,
        n_layers: int = 2,
        id_channel: bool = False,
        prune_ratio: float = 0.5,
        input_affine: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        channels = [*features, *(["id"] if id_channel else [])]
        super().__init__(n_users, n_items, channels, dim)
        self.features = features  # fixed raw features, not parameters
        self.proj = nn.ModuleDict({m: nn.Linear(f.shape[1], dim) for m, f in features.items()})
        self.preference = xavier_embedding(n_users, len(channels) * dim)  # P^m, all channels
        self.item_id = xavier_embedding(n_items, dim) if id_channel else None
        self.train_pairs = train
        self.adj = adj  # full A_hat: evaluation and export
        self.pruned: SparseOp | None = None  # A~ of the current epoch (training only)
        self.item_graphs = item_graphs
        self.n_layers = n_layers
        self.prune_ratio = prune_ratio
        self.input_affine = input_affine or {}  # standardisation (mu, s) the features had
        self._project = FixedInputProjection()  # F1 with a cached F^T for its gradient
        self._blocks: tuple[SparseOp, SparseOp, SparseOp] | None = None  # (graph, R~, R~^T)

    def start_epoch(self, rng: np.random.Generator) -> None:
        if self.prune_ratio > 0:
            pruned = degree_sensitive_pruning(
                self.n_users, self.n_items, self.train_pairs, self.prune_ratio, rng
            )
            self.pruned = SparseOp(pruned, self.adj.device)
        self._blocks = None

    def _graph(self) -> SparseOp:
        return self.pruned if (self.training and self.pruned is not None) else self.adj

    def _user_item_blocks(self) -> tuple[SparseOp, SparseOp]:
        """The current graph's off-diagonal blocks: users x items (R~) and items x users."""
        adj, n = self._graph(), self.n_users
        if self._blocks is None or self._blocks[0] is not adj:
            r = SparseOp(adj.csr[:n, n:], adj.device)
            self._blocks = (adj, r, r.transposed())
        return self._blocks[1], self._blocks[2]

    def item_nodes(self) -> torch.Tensor:
        """F1 for every channel: [n_i, M, d]."""
        nodes = [
            self._project(self.proj[m], self.content_feature(m, f))
            for m, f in self.features.items()
        ]
        if self.item_id is not None:
            nodes.append(self.item_id)
        return torch.stack(nodes, 1)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        m, d = len(self.channels), self.dim
        x_i = self.item_nodes()
        x = torch.cat([self.preference, x_i.reshape(self.n_items, m * d)], 0)  # F2
        adj = self._graph()
        z = x
        for _ in range(self.n_layers):  # F3: all channels in one sparse product per layer
            x = adj(x)
            z = z + x
        z = z / (self.n_layers + 1)
        z_u, z_i = z[: self.n_users], z[self.n_users :].view(self.n_items, m, d)
        return z_u.view(self.n_users, m, d), z_i + self._item_hop(x_i)  # F4

    def batch_embeddings(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # F2-F4 on the graph's two blocks (it is bipartite: X_U' = R~ X_I, X_I' = R~^T X_U), with
        # the users' sums taken for the batch's rows only ((R~ X_I)[B] = R~[B] X_I). All users'
        # layer is still needed for the items' next layer, but not for the last one, and no
        # [n_u + n_i, M*d] matrix is concatenated, summed or divided: at d 128 those 30-40 MB
        # tensors dominated the step (360 -> ~200 ms on the Baby shape, 2 threads, ad hoc).
        # Same values and gradients as embeddings()[0][users] (tests/trainer/test_freedom.py).
        m, d = len(self.channels), self.dim
        uniq, inverse = torch.unique(users, return_inverse=True)
        r, r_t = self._user_item_blocks()
        rows = r.rows(uniq.cpu().numpy())
        x_i = self.item_nodes()
        xi, xu = x_i.reshape(self.n_items, m * d), self.preference
        zu, zi = xu[uniq], xi
        for layer in range(self.n_layers):
            zu = zu + rows(xi)
            xi_next = r_t(xu)
            if layer < self.n_layers - 1:  # all users' next layer, for the items' one after
                xu = r(xi)
            xi = xi_next
            zi = zi + xi
        scale = 1.0 / (self.n_layers + 1)
        e_u = (zu * scale)[inverse].view(-1, m, d)
        return e_u, (zi * scale).view(self.n_items, m, d) + self._item_hop(x_i)

    def _item_hop(self, x_i: torch.Tensor) -> torch.Tensor:
        """F4's S^m X_I^m: [n_i, M, d]."""
        m, d = len(self.channels), self.dim
        if isinstance(self.item_graphs, dict):  # each channel over its own graph
            return torch.stack(
                [self.item_graphs[ch](x_i[:, c]) for c, ch in enumerate(self.channels)], 1
            )
        return self.item_graphs(x_i.reshape(self.n_items, m * d)).view(self.n_items, m, d)

    def reg_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """sum_m mean(P^m[u]^2) over the batch users (the DRAGON backbone's regulariser, A4)."""
        p = self.preference[users].view(users.shape[0], len(self.channels), self.dim)
        return p.pow(2).mean(dim=(0, 2)).sum()

    def export_extras(self) -> dict[str, np.ndarray]:
        # cold start: a new item's layer-0 node is Lin^m(f) (F1); one linear map, so only
        # w1/b1 are written (the DRAGON backbone's two-layer projection adds w2/b2)
        out: dict[str, np.ndarray] = {}
        t = dict(self.feature_transform.items()) if self.feature_transform is not None else {}
        for m, p in self.proj.items():
            w, b = raw_feature_layer(p, t.get(m), self.input_affine.get(m))
            out[f"proj_{m}_w1"], out[f"proj_{m}_b1"] = w, b
        with torch.no_grad():  # fold-in (F4 for a new item): X_I, the states S is applied to
            out["foldin_state"] = self.item_nodes().float().cpu().numpy()
            out.update(self._propagation_parts())
        return {**out, **fold_in_feature_arrays(self.features, self.input_affine)}

    def _propagation_parts(self) -> dict[str, np.ndarray]:
        """F3 split by node for fold-in (trainer/foldin), on the full A_hat (a_ui = 1/sqrt(d_u
        d_i)): e_u = P_u / (L+1) + sum_{i in N(u)} m_i / sqrt(d_u), m_i = sum_{l<L} (A^l
        X0)_i / (sqrt(d_i) (L+1)) (the user's layer l+1 is the sum over its items of a_ui
        times the item's layer l), so a user with new items is the same sum over more items.
        An item's own edges give it Z_i - X_i / (L+1) (its id node included): what a new
        item lacks. Items without training users get m_i = X_i / (L+1) (degree 1 once one)."""
        m, d, n_u = len(self.channels), self.dim, self.n_users
        x_i = self.item_nodes().reshape(self.n_items, m * d)
        x = torch.cat([self.preference, x_i], 0)
        degrees = np.diff(self.adj.csr.indptr).astype(np.float64)  # distinct training pairs
        deg, deg_u = degrees[n_u:], degrees[:n_u]
        layers = [x]
        for _ in range(self.n_layers):
            layers.append(self.adj(layers[-1]))
        scale = torch.from_numpy(1.0 / np.sqrt(np.maximum(deg, 1.0))).float()[:, None]
        msg = sum(layer[n_u:] for layer in layers[:-1]) * scale / (self.n_layers + 1)
        # the users' side, for new items (trainer/foldin/interactions.py): Z_i = X_i / (L+1) +
        # sum_{u in N(i)} n_u / sqrt(d_i), n_u = sum_{l<L} (A^l X0)_u / (sqrt(d_u) (L+1))
        scale_u = torch.from_numpy(1.0 / np.sqrt(np.maximum(deg_u, 1.0))).float()[:, None]
        out_u = sum(layer[:n_u] for layer in layers[:-1]) * scale_u / (self.n_layers + 1)
        z_i = sum(layer[n_u:] for layer in layers) / (self.n_layers + 1)
        content = x_i.view(self.n_items, m, d).clone()
        if self.item_id is not None:
            content[:, self.channels.index("id")] = 0.0
        edges = z_i.view(self.n_items, m, d) - content / (self.n_layers + 1)

        def out(t: torch.Tensor, n: int) -> np.ndarray:
            return t.reshape(n, m, d).float().cpu().numpy()

        return {
            "foldin_user_self": out(self.preference / (self.n_layers + 1), n_u),
            "foldin_user_msg": out(msg, self.n_items),
            "foldin_item_edges": out(edges, self.n_items),
            "foldin_user_out": out(out_u, n_u),
        }

    def fold_in_spec(self) -> dict[str, object]:
        # a new item has no edges: Z = X / (L + 1) (F3's layer mean), then F4 e = Z + S X
        return {"backbone": "freedom", "layer0": "linear", "self_scale": 1 / (self.n_layers + 1)}
