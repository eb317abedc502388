"""The reliability score per (item, modality): signals, self-supervised combination, confidence.

    score_items(data, model=None, cfg=None) -> ReliabilityScores

1. signals on the real content (signals.py, oof.py, matching.py; model_signals.py with a model);
2. the same signals on ``inject_rounds`` copies with a known extra set of swaps (calibrate.py);
3. per modality, a logistic regression fit on the copies to find the injected swaps, then fit
   again with each clean-labelled row weighted by the first fit's probability that the item's
   real content is clean (the copies keep the data's own swaps, labelled clean);
4. score = 1 - its probability on the real items; confidence = n / (n + half_confidence) from
   the item's training interactions. Never NaN; never reads a corruption mask.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trainer.reliability import calibrate, matching, oof, signals
from trainer.reliability.model_signals import ModelArrays, bpr_reliability, swap_item_rows

if TYPE_CHECKING:
    from trainer.data.dataset import Dataset

# the signals the combiner sees (higher = content agrees with behaviour), in column order
CONTENT_SIGNALS = ("agreement", "cross_modal", "matching", "assignment", "matching_robust",
                   "assignment_robust", "collab_from_content", "profile_rank")  # fmt: skip
MODEL_SIGNAL = "bpr_reliability"  # Eq. 6 targets accumulated per item (needs a model)
WEIGHT_SIGNAL = "learned_weight"  # reported only: a swap after training cannot be simulated


class ReliabilityConfig(BaseModel):
    """Settings of ``score_items`` (the defaults are what bench/reliability.py measures)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="seed of folds, SVD start, injected swaps, negatives")
    folds: int = Field(5, ge=2, description="folds of the out-of-fold cross-modal predictor")
    svd_dim: int = Field(256, ge=1, description="size of the collaborative (SVD) item embedding")
    svd_items_per_dim: int = Field(
        8,
        ge=1,
        description="at most one SVD dimension per this many items (a 200-item catalogue's "
        "199-d embedding is mostly noise to the out-of-fold ridges)",
    )
    inject_fraction: float = Field(
        0.15, gt=0, lt=0.5, description="share of items per modality swapped in each copy"
    )
    inject_rounds: int = Field(2, ge=1, description="swapped copies the combiner is fit on")
    half_confidence: float = Field(
        5.0, gt=0, description="training interactions at which confidence is 0.5"
    )
    profile_rank: bool = Field(
        False, description="also compute the leave-one-out profile-rank signal (slow, weak)"
    )
    l2: float = Field(1e-2, ge=0, description="L2 penalty of the logistic combiner")
    reweight: bool = Field(
        True,
        description="refit the combiner with the copies' clean-labelled rows weighted by the "
        "first fit's probability that the item's real content is clean",
    )
    negatives: int = Field(4, ge=1, description="negatives per training pair for Eq. 6")
    tau_conf: float = Field(5.0, gt=0, description="Eq. 7 confidence scale for Eq. 6")
    chunk: int = Field(1024, ge=1, description="items per block of the agreement signal")
    neighbours: int = Field(
        30, ge=1, description="collaborative neighbours whose mean content the matcher sees"
    )
    match_rank: int = Field(
        32, ge=1, description="content principal components the matching LLR compares"
    )
    match_repeats: int = Field(
        1, ge=1, description="fold partitions the matching LLR is averaged over (less variance)"
    )
    content_neighbours: int = Field(
        10,
        ge=0,
        description="nearest items by each OTHER modality's content whose mean content of the "
        "scored modality the matcher also sees (0: none)",
    )
    match_input_rank: int = Field(
        128,
        ge=0,
        description="principal components kept of each matcher input block (0: all columns)",
    )
    match_unit_rows: bool = Field(
        False, description="match unit-length content rows (else the rows as given, centred)"
    )
    match_drop: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="share of most suspicious training rows the robust matcher refits without "
        "(0: no robust refit, no matching_robust signal)",
    )


def svd_rank(cfg: ReliabilityConfig, n_items: int) -> int:
    """The collaborative embedding's size for a catalogue of ``n_items``."""
    return max(1, min(cfg.svd_dim, n_items // cfg.svd_items_per_dim))


@dataclass(frozen=True)
class ReliabilityScores:
    """Per (item, modality) reliability; every array is float32 [n_items, len(modalities)]."""

    modalities: list[str]
    score: np.ndarray  # in [0, 1], 1 = the content agrees with the item's behaviour
    confidence: np.ndarray  # in [0, 1], low for items with few training interactions
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # raw, NaN = no evidence
    method: dict[str, Any] = field(default_factory=dict)  # JSON-able description

    def for_channels(self, channels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(score, confidence) aligned to a model's channels; a channel without content
        (e.g. ``id``) gets score 1 and confidence 0: nothing to check."""
        n = self.score.shape[0]
        score = np.ones((n, len(channels)), np.float32)
        conf = np.zeros((n, len(channels)), np.float32)
        for c, name in enumerate(channels):
            if name in self.modalities:
                m = self.modalities.index(name)
                score[:, c], conf[:, c] = self.score[:, m], self.confidence[:, m]
        return score, conf


def content_signals(
    data: Dataset,
    features: dict[str, np.ndarray],
    cfg: ReliabilityConfig,
    collab: np.ndarray,
    fold: np.ndarray,
    progress: Callable[[int], object] | None = None,
) -> dict[str, np.ndarray]:
    """The training-free signals of ``features`` (the real content or a swapped copy);
    ``progress(1)`` after each modality."""
    item_users = data.train_matrix().T.tocsr()
    has = np.asarray(item_users.sum(1)).ravel() > 0
    mods = list(features)
    out = {s: np.full((data.n_items, len(mods)), np.nan) for s in CONTENT_SIGNALS}
    # the matcher's inputs: the collaborative embedding, every other modality, and every
    # modality's mean over the item's collaborative neighbours (never the item's own row)
    near = [matching.neighbour_mean(item_users, features[m], cfg.neighbours, chunk=cfg.chunk)
            for m in mods]  # fmt: skip
    # the first partition is the cross-modal signal's; the others only average out fold noise
    folds = [fold] + [oof.folds_of(len(fold), cfg.folds, cfg.seed + 7919 * r)
                      for r in range(1, cfg.match_repeats)]  # fmt: skip
    for j, m in enumerate(mods):
        out["agreement"][:, j] = signals.agreement(item_users, features[m], chunk=cfg.chunk)
        out["cross_modal"][:, j] = oof.cross_modal(collab, features, m, fold)
        others = [signals.unit_rows(features[o]) for o in mods if o != m]
        # the scored modality's mean over the items nearest by each other modality's content
        # (titles of items with like genres): a nonlinear view a ridge on the content lacks
        alike = [matching.neighbour_mean(features[o], features[m], cfg.content_neighbours,
                                         chunk=cfg.chunk)
                 for o in mods if o != m and cfg.content_neighbours > 0]  # fmt: skip
        blocks = [collab, *others, *near, *alike]
        x = oof.input_blocks([matching.principal_scores(b, cfg.match_input_rank) for b in blocks])
        y = signals.unit_rows(features[m]) if cfg.match_unit_rows else features[m].astype(float)
        plain = [matching.robust_matching(x, y, f, cfg.match_rank, 0.0) for f in folds]
        out["matching"][:, j], out["assignment"][:, j] = np.mean(plain, axis=0)
        if cfg.match_drop > 0:
            robust = matching.robust_matching(x, y, fold, cfg.match_rank, cfg.match_drop)
            out["matching_robust"][:, j], out["assignment_robust"][:, j] = robust
        out["collab_from_content"][:, j] = oof.collab_from_content(collab, features[m], fold, has)
        if cfg.profile_rank:
            out["profile_rank"][:, j] = signals.profile_rank(data.train, data.n_users, features[m])
        if progress is not None:
            progress(1)
    if not cfg.profile_rank:
        del out["profile_rank"]
    if cfg.match_drop == 0:  # the robust fit is the plain one
        del out["matching_robust"], out["assignment_robust"]
    return out


def _model_signal(
    data: Dataset, model: ModelArrays, mods: list[str], cfg: ReliabilityConfig, item_emb: Any
) -> np.ndarray:
    """Eq. 6 accumulated per item, columns = ``mods`` (channels of the model)."""
    z = bpr_reliability(
        data.train,
        model.user_emb,
        item_emb,
        model.weights,
        tau_conf=cfg.tau_conf,
        negatives=cfg.negatives,
        seed=cfg.seed,
    )
    return np.stack([z[:, model.channels.index(m)] for m in mods], 1)


def _design(sig: dict[str, np.ndarray], n_train: np.ndarray, j: int) -> np.ndarray:
    """Combiner inputs for modality column j: each signal, the mean of that signal over the
    other modalities (a swap in one modality also disturbs the others' cross-modal signal),
    and log(1 + training interactions)."""
    cols = []
    for s in sig.values():
        cols.append(s[:, j])
        if s.shape[1] > 1:
            with warnings.catch_warnings():  # rows with no evidence anywhere stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                cols.append(np.nanmean(np.delete(s, j, axis=1), axis=1))
    cols.append(np.log1p(n_train))
    return np.stack(cols, 1)


def _design_names(names: list[str], n_mods: int) -> list[str]:
    out = []
    for s in names:
        out += [s, f"{s} (other modalities)"] if n_mods > 1 else [s]
    return [*out, "log(1 + train interactions)"]


def score_items(
    data: Dataset,
    model: ModelArrays | None = None,
    cfg: ReliabilityConfig | None = None,
    *,
    progress: Callable[[int], object] | None = None,
) -> ReliabilityScores:
    """Reliability score and confidence per (item, modality) of ``data``'s content.

    ``model``: optional trained model arrays; adds the Eq. 6 signal (combined) and the learned
    weights (reported). ``progress(1)`` after each of the (1 + inject_rounds) * modalities
    signal passes. ``data.corruption`` is never read.
    """
    cfg = cfg or ReliabilityConfig()
    mods = list(data.features)
    if not mods:
        raise ValueError(f"dataset {data.name!r} has no modality to score")
    if data.n_items < max(3, cfg.folds):
        raise ValueError(f"dataset {data.name!r}: {data.n_items} items, need at least {cfg.folds}")
    use_model = model is not None and all(m in model.channels for m in mods)
    n_train = np.bincount(data.train[:, 1], minlength=data.n_items).astype(np.float64)
    collab = oof.collaborative_embedding(
        data.train_matrix().T, svd_rank(cfg, data.n_items), cfg.seed
    )
    fold = oof.folds_of(data.n_items, cfg.folds, cfg.seed)

    # 1. signals of the real content
    real = content_signals(data, data.features, cfg, collab, fold, progress)
    if use_model:
        real[MODEL_SIGNAL] = _model_signal(data, model, mods, cfg, model.item_emb)

    # 2. the same signals on copies with known injected swaps
    rng = np.random.default_rng(cfg.seed + 1)
    xs: list[list[np.ndarray]] = [[] for _ in mods]
    ys: list[list[np.ndarray]] = [[] for _ in mods]
    for _ in range(cfg.inject_rounds):
        feats, injected, donors = calibrate.inject_swaps(data.features, cfg.inject_fraction, rng)
        sig = content_signals(data, feats, cfg, collab, fold, progress)
        if use_model:
            emb = swap_item_rows(model.item_emb, model.channels, donors)
            sig[MODEL_SIGNAL] = _model_signal(data, model, mods, cfg, emb)
        for j, m in enumerate(mods):
            xs[j].append(_design(sig, n_train, j))
            ys[j].append(injected[m])

    # 3. one combiner per modality, fit on the copies, applied to the real items
    names = _design_names(list(real), len(mods))
    suspicion = np.zeros((data.n_items, len(mods)))
    coefs: dict[str, dict[str, float]] = {}
    self_auc: dict[str, float] = {}
    for j, m in enumerate(mods):
        x, y, x_real = np.concatenate(xs[j]), np.concatenate(ys[j]), _design(real, n_train, j)
        comb = calibrate.LogisticCombiner(cfg.l2).fit(x, y)
        if cfg.reweight:  # again, with the copies' likely real swaps down-weighted
            weight = calibrate.clean_weights(y, comb.predict(x_real), cfg.inject_rounds)
            comb = calibrate.LogisticCombiner(cfg.l2).fit(x, y, weight)
        self_auc[m] = round(calibrate.roc_auc(y, comb.predict(x)), 4)
        suspicion[:, j] = comb.predict(x_real)
        coefs[m] = {n: round(float(c), 4) for n, c in zip(names, comb.coef, strict=True)}

    # 4. score and confidence; the learned weights ride along as a reported signal
    conf = calibrate.evidence_confidence(n_train, cfg.half_confidence)
    report = dict(real)
    if use_model:
        cols = [model.channels.index(m) for m in mods]
        report[WEIGHT_SIGNAL] = model.weights[:, cols]
    method = {
        "name": "self-supervised logistic combination of reliability signals",
        "signals": list(real),
        "reported_only": [WEIGHT_SIGNAL] if WEIGHT_SIGNAL in report else [],
        "injected": {
            "kind": "swap with another random item's row",
            "fraction": cfg.inject_fraction,
            "rounds": cfg.inject_rounds,
        },
        "coefficients": coefs,
        "auc_on_injected_copies": self_auc,
        "confidence": f"n_train / (n_train + {cfg.half_confidence:g})",
        "config": cfg.model_dump(),
    }
    return ReliabilityScores(
        modalities=mods,
        score=np.clip(1.0 - suspicion, 0.0, 1.0).astype(np.float32),
        confidence=np.repeat(conf[:, None], len(mods), 1).astype(np.float32),
        signals={k: v.astype(np.float32) for k, v in report.items()},
        method=method,
    )
