"""SEA: separate generic / unique learning with mutual-information bounds (ALGORITHMS.md 3, 3.7).

    T^m        a learnable d_m -> d_m feature transform installed in the model before its
               feature projection (identity at start); the whole T^m(F^m) feeds the model,
               its halves G^m | U^m (generic | unique) only regularise T^m (S2)
    z^m        L2-normalised head(G^m) (MLP with BatchNorm + ReLU, hidden 64, out 32)
    x^m, y^m   L2-normalised linear projections (32) of G^m and U^m
    L_align    Solosim (Eq. 16): one-directional cross-modal InfoNCE, later modality as
               anchors, every other row as negative; ``infonce``: both directions averaged
    L_dis^m    sampled vCLUB (Eq. 15): max(0, 0.5 mean_i[log q(y_i|x_i) - log q(y_pi(i)|x_i)])
               with a Gaussian q_theta per modality, fitted by its own Adam (``sea_club_steps``
               inner steps per batch, on exactly the detached (x^m, y^m) pairs; S5);
               ``neg-l2``: -mean ||x^m - y^m||^2 (bounded, in [-4, 0], Eq. 30)
    loss       alpha_s L_align + beta_s mean_m L_dis^m, in every stage
    scope      ``batch`` (default): the unique items of the batch; ``full``: every item
               (the SEA code; O(n_i^2) Solosim logits and n_i x d_m^2 transform MACs per step)

The transform is linear, so the exported cold-start projection folds it into its first layer.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.errors import ConfigError
from trainer.plugins.base import Plugin, StepContext

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.data.dataset import Dataset
    from trainer.models.base import Recommender

PROJ_DIM, HEAD_HIDDEN = 32, 64


# -- the estimators and losses ------------------------------------------------------------------
class ClubEstimator(nn.Module):
    """q_theta(y|x) = N(mu(x), diag(exp(lv(x)))), lv through tanh (the CLUB reference code)."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int) -> None:
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, y_dim))
        self.logvar = nn.Sequential(
            nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, y_dim), nn.Tanh()
        )

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y_i|x_i) up to a constant: sum_d -(y - mu)^2 / (2 exp(lv)) - lv/2.  -> [N]."""
        mu, lv = self.mu(x), self.logvar(x)
        return (-((y - mu) ** 2) / (2 * lv.exp()) - lv / 2).sum(-1)

    def nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The estimator's own objective (maximise the likelihood of the true pairs)."""
        return -self.log_likelihood(x, y).mean()


def club_bound(
    est: ClubEstimator, x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor
) -> torch.Tensor:
    """Sampled vCLUB (Eq. 15, code): max(0, 0.5 mean_i[log q(y_i|x_i) - log q(y_pi(i)|x_i)])."""
    gap = est.log_likelihood(x, y) - est.log_likelihood(x, y[perm])
    return torch.clamp(0.5 * gap.mean(), min=0.0)


def fit_club(
    est: ClubEstimator, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 1e-3
) -> ClubEstimator:
    """Fit q_theta on detached pairs (x_i, y_i) with Adam; used by tests and diagnostics."""
    opt = torch.optim.Adam(est.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        est.nll(x.detach(), y.detach()).backward()
        opt.step()
    return est


def solosim_loss(anchor: torch.Tensor, cand: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 16: -mean_i log softmax_j(a_i . c_j / tau)[i]; rows already L2-normalised."""
    logits = anchor @ (cand / tau).T  # scale the [N, 32] side, not the [N, N] logits
    return F.cross_entropy(logits, torch.arange(anchor.shape[0], device=anchor.device))


def infonce_loss(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Both directions of the cross-modal InfoNCE, averaged (SEA's ``InfoNCE`` variant, S8)."""
    return 0.5 * (solosim_loss(a, b, tau) + solosim_loss(b, a, tau))


def neg_l2_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 30, bounded: -mean_i ||x_i/|x_i| - y_i/|y_i| ||^2, in [-4, 0]."""
    return -(F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).pow(2).sum(-1).mean()


def identity_linear(dim: int) -> nn.Linear:
    lin = nn.Linear(dim, dim)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(dim))
        lin.bias.zero_()
    return lin


class SplitHeads(nn.Module):
    """Per modality: the alignment head of G and the two CLUB projections of G and U."""

    def __init__(self, gen_dim: int, uniq_dim: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Linear(gen_dim, HEAD_HIDDEN),
            nn.BatchNorm1d(HEAD_HIDDEN),
            nn.ReLU(),
            nn.Linear(HEAD_HIDDEN, HEAD_HIDDEN),
            nn.BatchNorm1d(HEAD_HIDDEN),
            nn.ReLU(),
            nn.Linear(HEAD_HIDDEN, PROJ_DIM),
        )
        self.x_proj = nn.Linear(gen_dim, PROJ_DIM)
        self.y_proj = nn.Linear(uniq_dim, PROJ_DIM)


# -- the plug-in --------------------------------------------------------------------------------
class SEAPlugin(Plugin):
    name = "sea"

    def __init__(self) -> None:
        self.cfg: TrainConfig | None = None
        self.model: Recommender | None = None
        self.modalities: list[str] = []
        self.split: dict[str, int] = {}
        self.heads = nn.ModuleDict()
        self.club = nn.ModuleDict()
        self.club_opt: torch.optim.Optimizer | None = None
        self._pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def setup(
        self,
        model: Recommender,
        data: Dataset,
        cfg: TrainConfig,
        device: torch.device,
        cache_dir: Path | None,
    ) -> None:
        feats = getattr(model, "features", None)
        if not isinstance(feats, dict) or not feats:
            raise ConfigError(f"--plugin sea: model {cfg.model} has no content features")
        self.cfg, self.model = cfg, model
        self.modalities = list(feats)
        transforms = nn.ModuleDict()
        for m, f in feats.items():
            d_m = int(f.shape[1])
            if d_m < 2:
                raise ConfigError(f"--plugin sea: modality {m} has {d_m} feature(s), needs >= 2")
            g = d_m // 2
            self.split[m] = g
            transforms[m] = identity_linear(d_m)
            self.heads[m] = SplitHeads(g, d_m - g)
            self.club[m] = ClubEstimator(PROJ_DIM, PROJ_DIM, cfg.sea_club_hidden)
        model.feature_transform = transforms.to(device)
        self.heads.to(device)
        self.club.to(device)
        self.club_opt = torch.optim.Adam(self.club.parameters(), lr=cfg.lr)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())

    def loss(self, ctx: StepContext) -> tuple[torch.Tensor | None, dict[str, float]]:
        cfg, model = self.cfg, self.model
        assert cfg is not None and model is not None, "setup() first"
        self.heads.train(model.training)
        if cfg.sea_scope == "full":
            items = torch.arange(model.n_items, device=ctx.pos.device)
        else:
            items = torch.unique(torch.cat([ctx.pos, ctx.neg]))
        z: dict[str, torch.Tensor] = {}
        l_dis: list[torch.Tensor] = []
        self._pairs = {}
        stats: dict[str, float] = {}
        for m in self.modalities:
            full = model.transformed.get(m)  # this step's forward pass already computed T^m(F^m)
            if full is not None and full.shape[0] == model.n_items and full.requires_grad:
                t = full[items]
            else:
                t = model.feature_transform[m](model.features[m][items])  # type: ignore[index]
            g = self.split[m]
            gen, uniq = t[:, :g], t[:, g:]
            heads = self.heads[m]
            z[m] = F.normalize(heads.head(gen), dim=-1)
            x = F.normalize(heads.x_proj(gen), dim=-1)
            y = F.normalize(heads.y_proj(uniq), dim=-1)
            if cfg.sea_distance == "club":
                perm = torch.randperm(x.shape[0], device=x.device)
                l_dis.append(club_bound(self.club[m], x, y, perm))
                self._pairs[m] = (x.detach(), y.detach())
            else:
                l_dis.append(neg_l2_distance(x, y))
            stats[f"sea_var_y_{m}"] = float(y.detach().var(0).sum())  # collapse monitor (S5)
        loss = cfg.sea_beta * torch.stack(l_dis).mean()
        stats["sea_dis"] = float(torch.stack(l_dis).detach().mean())
        pairs = list(itertools.combinations(self.modalities, 2))
        if pairs and cfg.sea_alpha > 0:
            align_fn = solosim_loss if cfg.sea_align == "solosim" else infonce_loss
            # Solosim anchors on the later modality (SEA: text anchors, image candidates)
            l_align = torch.stack([align_fn(z[b], z[a], cfg.sea_tau) for a, b in pairs]).mean()
            loss = loss + cfg.sea_alpha * l_align
            stats["sea_align"] = float(l_align.detach())
        return loss, stats

    def before_step(self) -> None:
        """CLUB inner loop: fit each q_theta on this step's detached (x^m, y^m) pairs."""
        cfg = self.cfg
        assert cfg is not None and self.club_opt is not None
        if not self._pairs:
            return
        for _ in range(cfg.sea_club_steps):
            self.club_opt.zero_grad(set_to_none=True)
            nll = sum(self.club[m].nll(x, y) for m, (x, y) in self._pairs.items())
            nll.backward()  # type: ignore[union-attr]
            self.club_opt.step()
        # the model loss also left gradients on theta; they are never applied (zeroed above)
        self.club_opt.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        assert self.club_opt is not None
        return {
            "heads": self.heads.state_dict(),
            "club": self.club.state_dict(),
            "club_opt": self.club_opt.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.club_opt is not None
        self.heads.load_state_dict(state["heads"])
        self.club.load_state_dict(state["club"])
        self.club_opt.load_state_dict(state["club_opt"])
