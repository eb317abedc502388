"""Synthetic multimodal dataset with planted preferences and known modality corruption.

Generative story (defaults give the Amazon Baby shape: 19445 users, 7050 items, 160792
interactions, 4096-d image and 384-d text features):

1. Structure. ``n_clusters`` centres in a ``LATENT_DIM``-d space; each item belongs to a
   cluster (mildly unequal sizes) and has latent factors z_i = centre + noise; each user has
   a home cluster and factors p_u = centre + noise.
2. Interactions. Item popularity follows a power law over a random item ranking. User u
   takes n_u distinct items (n_u = 5 + a heavy-tailed share of the rest, so every user has
   >= 5 when ``n_interactions >= 5 * n_users``; the counts sum to ``n_interactions``) drawn
   without replacement with probability proportional to
   ``exp(p_u . z_i / (TEMPERATURE * sqrt(LATENT_DIM))) * popularity_i ** POP_EXPONENT``
   (Gumbel top-k sampling, so it is exact and vectorised).
3. Features. Modality m sees a random ``OBSERVED_SHARE`` of the latent dimensions through
   a random linear map, plus a modality-specific nuisance factor and Gaussian noise, so
   each modality alone carries part of the signal and the modalities complement each
   other. Output transform by name: ``image*`` -> ReLU (non-negative, sparse-ish like CNN
   pooled features); ``text*`` -> rows L2-normalised (like MiniLM); others unchanged.
4. Corruption. ``round(corrupt_fraction * n_items)`` random items each get ONE modality
   (``corrupt_modality``, or one drawn uniformly per item) replaced by noise: Gaussian with
   that modality's per-column mean and standard deviation, through the same output
   transform, so a corrupted row has the right scale but no relation to the item. The
   ground truth is written as ``<modality>_corrupt.npy`` for every modality.
5. Split. Per user 8:1:1 with :func:`~trainer.data.split.split_per_user`.

Two options make the data look like real extracted features and real catalogues (issue 17:
a model must hold up on both):

- ``popularity_skew`` (default ``POP_EXPONENT``): the exponent s of rank ** -s in the sampling
  weight; 1.0 or more gives Zipf-like heavy-tailed item popularity (a few items take a large
  share of the interactions, most items have a handful).
- ``unnormalised``: each modality skips its output transform and every column gets its own
  scale, log-uniform over ``RAW_SCALE_RANGE``, times a per-modality scale, plus an offset, as
  features straight from an extractor (visual, acoustic) are; corrupted rows follow the same
  column statistics, so they still have the right scale.

Everything is drawn from independent streams of one ``seed``, so the output is
deterministic given the arguments.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from trainer.data.dataset import write_dataset
from trainer.data.split import split_per_user
from trainer.errors import ConfigError

LATENT_DIM = 16
"""Dimension of the planted user/item factors."""
TEMPERATURE = 0.8
"""Softness of user preferences: logit = p_u . z_i / (TEMPERATURE * sqrt(LATENT_DIM))."""
POP_EXPONENT = 0.4
"""Weight of the power-law popularity factor in the sampling probability."""
ZIPF_EXPONENT = 1.0
"""Item popularity is proportional to rank ** -ZIPF_EXPONENT."""
RAW_SCALE_RANGE = (1e-2, 1e2)
"""``unnormalised``: per-column scales are log-uniform in this range (times a modality scale
drawn from the same range), offsets are N(0, 1) times the column scale."""
CLUSTER_SPREAD = 0.7
"""Standard deviation of item and user factors around their cluster centre."""
OBSERVED_SHARE = 0.75
"""Share of latent dimensions each modality observes."""
NUISANCE_DIM, NUISANCE_SCALE, NOISE_SCALE = 8, 0.7, 0.7
"""Modality-specific nuisance factor (dimension, scale) and per-feature noise scale."""
_USER_CHUNK = 512  # users per Gumbel top-k block: 512 x 7050 float32 ~ 14 MB
_ROW_CHUNK = 1024  # item rows per feature block


def import_synth(
    out: str | Path,
    *,
    n_users: int = 19445,
    n_items: int = 7050,
    n_interactions: int = 160792,
    modalities: dict[str, int] | None = None,
    corrupt_fraction: float = 0.2,
    corrupt_modality: str | None = None,
    n_clusters: int = 20,
    seed: int = 0,
    overwrite: bool = False,
    name: str = "synth",
    progress: bool = True,
    popularity_skew: float = POP_EXPONENT,
    unnormalised: bool = False,
) -> Path:
    """Generate a synthetic bundle (story in the module docstring); returns its path."""
    modalities = dict(modalities) if modalities is not None else {"image": 4096, "text": 384}
    _check_args(
        n_users, n_items, n_interactions, modalities, corrupt_fraction, corrupt_modality, n_clusters
    )
    if not 0.0 <= popularity_skew <= 5.0:
        raise ConfigError(f"popularity_skew must be in [0, 5], got {popularity_skew}")
    s_struct, s_inter, s_feat, s_corrupt = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )

    # 1. planted structure
    centres = s_struct.standard_normal((n_clusters, LATENT_DIM))
    sizes = s_struct.dirichlet(np.full(n_clusters, 5.0))
    item_cluster = s_struct.choice(n_clusters, size=n_items, p=sizes)
    user_cluster = s_struct.choice(n_clusters, size=n_users, p=sizes)
    z = centres[item_cluster] + CLUSTER_SPREAD * s_struct.standard_normal((n_items, LATENT_DIM))
    p = centres[user_cluster] + CLUSTER_SPREAD * s_struct.standard_normal((n_users, LATENT_DIM))
    rank = s_struct.permutation(n_items) + 1
    log_pop = -ZIPF_EXPONENT * np.log(rank)

    # 2. interactions
    counts = _user_counts(s_inter, n_users, n_items, n_interactions)
    pairs = _sample_pairs(s_inter, p, z, popularity_skew * log_pop, counts, progress)
    labels = split_per_user(pairs, (0.8, 0.1, 0.1), seed)

    # 3. features, 4. corruption
    names = list(modalities)
    n_bad = round(corrupt_fraction * n_items)
    bad_items = s_corrupt.choice(n_items, size=n_bad, replace=False)
    if corrupt_modality is None:
        bad_mod = s_corrupt.integers(len(names), size=n_bad)
    else:
        bad_mod = np.full(n_bad, names.index(corrupt_modality))
    features, corruption = {}, {}
    for k, m in enumerate(tqdm(names, desc="synth features", disable=not progress)):
        rows = bad_items[bad_mod == k]
        # noise from its own stream: clean rows are identical whatever is corrupted
        features[m] = _modality(s_feat, s_corrupt, m, modalities[m], z, rows)
        if unnormalised:
            # its own stream: the normalised features stay identical with or without it
            features[m] = _unnormalise(np.random.default_rng([seed, 1, k]), features[m], m)
        corruption[m] = np.zeros(n_items, dtype=bool)
        corruption[m][rows] = True

    return write_dataset(
        out,
        name=name,
        interactions=np.concatenate([pairs, labels[:, None]], axis=1),
        features=features,
        user_ids=[str(u) for u in range(n_users)],
        item_ids=[str(i) for i in range(n_items)],
        item_meta=[
            {"title": f"item {i} (cluster {c})", "categories": [f"cluster-{c}"]}
            for i, c in enumerate(item_cluster.tolist())
        ],
        corruption=corruption,
        overwrite=overwrite,
        stats={
            "raw": "synthetic",
            "seed": seed,
            "planted": {
                "latent_dim": LATENT_DIM,
                "n_clusters": n_clusters,
                "temperature": TEMPERATURE,
                "pop_exponent": popularity_skew,
                "unnormalised": unnormalised,
                "zipf_exponent": ZIPF_EXPONENT,
                "observed_share": OBSERVED_SHARE,
                "nuisance_scale": NUISANCE_SCALE,
                "noise_scale": NOISE_SCALE,
                "corrupt_fraction": corrupt_fraction,
                "corrupt_modality": corrupt_modality,
                "corruption": "row replaced by noise with the modality's column mean/std",
            },
        },
    )


def _check_args(
    n_users: int,
    n_items: int,
    n_interactions: int,
    modalities: dict[str, int],
    corrupt_fraction: float,
    corrupt_modality: str | None,
    n_clusters: int,
) -> None:
    if min(n_users, n_items, n_clusters) < 1:
        raise ConfigError("n_users, n_items and n_clusters must be >= 1")
    if not n_users <= n_interactions <= n_users * n_items:
        raise ConfigError(
            f"n_interactions must be between n_users ({n_users}) and "
            f"n_users * n_items ({n_users * n_items}), got {n_interactions}"
        )
    if not modalities or any(d < 1 for d in modalities.values()):
        raise ConfigError(f"modalities must map names to dimensions >= 1, got {modalities}")
    if not 0.0 <= corrupt_fraction <= 1.0:
        raise ConfigError(f"corrupt_fraction must be in [0, 1], got {corrupt_fraction}")
    if corrupt_modality is not None and corrupt_modality not in modalities:
        raise ConfigError(
            f"corrupt_modality {corrupt_modality!r} is not one of {', '.join(modalities)}"
        )


def _user_counts(rng: np.random.Generator, n_users: int, n_items: int, total: int) -> np.ndarray:
    """Interactions per user: a floor of 5 (or what is feasible) plus a heavy-tailed share."""
    base = min(5, total // n_users, n_items)
    weights = rng.lognormal(0.0, 1.0, size=n_users)
    counts = base + rng.multinomial(total - base * n_users, weights / weights.sum())
    # Nobody can take more items than exist: hand the excess to users below the cap.
    while (over := counts - n_items)[over > 0].sum() > 0:
        excess = int(over[over > 0].sum())
        counts = np.minimum(counts, n_items)
        room = n_items - counts
        counts += rng.multivariate_hypergeometric(room, min(excess, int(room.sum())))
    return counts.astype(np.int64)


def _sample_pairs(
    rng: np.random.Generator,
    p: np.ndarray,
    z: np.ndarray,
    log_pop: np.ndarray,
    counts: np.ndarray,
    progress: bool,
) -> np.ndarray:
    """Distinct (user, item) pairs, ``counts[u]`` per user, by Gumbel top-k sampling."""
    scale = 1.0 / (TEMPERATURE * math.sqrt(LATENT_DIM))
    zt = (z.T * scale).astype(np.float32)
    bias = log_pop.astype(np.float32)  # already times the popularity skew
    # Users in order of their count, so each block's top-k width is tight.
    order = np.argsort(counts, kind="stable")
    out_users, out_items = [], []
    blocks = range(0, len(order), _USER_CHUNK)
    for start in tqdm(blocks, desc="synth interactions", disable=not progress):
        users = order[start : start + _USER_CHUNK]
        k = counts[users]
        kmax = int(k.max())
        keys = p[users].astype(np.float32) @ zt + bias
        u = rng.random(keys.shape, dtype=np.float32)
        keys -= np.log(-np.log(np.maximum(u, np.float32(1e-12))))  # + Gumbel(0, 1)
        top = np.argpartition(-keys, kmax - 1, axis=1)[:, :kmax]
        top_keys = np.take_along_axis(keys, top, axis=1)
        top = np.take_along_axis(top, np.argsort(-top_keys, axis=1), axis=1)
        take = np.arange(kmax)[None, :] < k[:, None]
        out_users.append(np.broadcast_to(users[:, None], top.shape)[take])
        out_items.append(top[take])
    pairs = np.stack([np.concatenate(out_users), np.concatenate(out_items)], axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))].astype(np.int64)


def _modality(
    rng: np.random.Generator,
    noise_rng: np.random.Generator,
    name: str,
    dim: int,
    z: np.ndarray,
    corrupt_rows: np.ndarray,
) -> np.ndarray:
    """float32 [n_items, dim] features of one modality, corrupt rows replaced by noise."""
    n_items = len(z)
    seen = rng.choice(LATENT_DIM, size=math.ceil(OBSERVED_SHARE * LATENT_DIM), replace=False)
    a = (rng.standard_normal((len(seen), dim)) / math.sqrt(len(seen))).astype(np.float32)
    b = (
        rng.standard_normal((NUISANCE_DIM, dim)) * NUISANCE_SCALE / math.sqrt(NUISANCE_DIM)
    ).astype(np.float32)
    zs = z[:, seen].astype(np.float32)
    out = np.empty((n_items, dim), dtype=np.float32)
    total = np.zeros(dim)
    total_sq = np.zeros(dim)
    for start in range(0, n_items, _ROW_CHUNK):
        rows = slice(start, start + _ROW_CHUNK)
        n = len(zs[rows])
        x = zs[rows] @ a
        x += rng.standard_normal((n, NUISANCE_DIM), dtype=np.float32) @ b
        x += NOISE_SCALE * rng.standard_normal((n, dim), dtype=np.float32)
        total += x.sum(axis=0, dtype=np.float64)
        total_sq += np.square(x, dtype=np.float64).sum(axis=0)
        out[rows] = _transform(name, x)
    if len(corrupt_rows):
        mean = total / n_items
        std = np.sqrt(np.maximum(total_sq / n_items - mean**2, 0.0))
        noise = noise_rng.standard_normal((len(corrupt_rows), dim), dtype=np.float32)
        out[corrupt_rows] = _transform(name, (noise * std + mean).astype(np.float32))
    return out


def _unnormalise(rng: np.random.Generator, x: np.ndarray, name: str) -> np.ndarray:
    """Undo the canonical scale: per-column log-uniform scales and offsets (``unnormalised``).

    Computed from the transformed features so the within-column structure (which items are
    alike) is kept; image columns stay non-negative (a shifted ReLU output).
    """
    lo, hi = np.log(RAW_SCALE_RANGE)
    scale = np.exp(rng.uniform(lo, hi)) * np.exp(rng.uniform(lo, hi, size=x.shape[1]))
    offset = rng.standard_normal(x.shape[1]) * scale
    if name.startswith("image"):
        offset = np.abs(offset)
    return (x * scale + offset).astype(np.float32)


def _transform(name: str, x: np.ndarray) -> np.ndarray:
    if name.startswith("image"):
        return np.maximum(x, 0.0, out=x)
    if name.startswith("text"):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x
