"""Synthetic MARGO model bundles with planted structure for the serving benchmark: items in clusters
under topics, seen by each modality through its own directions; a share of items with one noisy
modality and a low learned weight ``w_i^m`` for it; Zipf popularity with item norms growing with
it; users mixing one to three clusters, their training items drawn from them by popularity.

    python -m bench.synth_bundle /tmp/margo-bench/b100k --items 100000 --users 20000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trainer.bundle import write_bundle

CHANNELS, DIM = ("image", "text"), 64
ITEMS_PER_CLUSTER, CLUSTERS_PER_TOPIC, UNRELIABLE_SHARE = 1000, 20, 0.2


def _unit(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def generate(n_items: int, n_users: int, *, seed: int = 0, seen_per_user: int = 20) -> tuple[dict[str, np.ndarray], list[dict]]:
    rng = np.random.default_rng(seed)
    n_clusters = max(4, n_items // ITEMS_PER_CLUSTER)
    n_topics = max(1, n_clusters // CLUSTERS_PER_TOPIC)
    cluster_topic, item_cluster = rng.integers(0, n_topics, n_clusters), rng.integers(0, n_clusters, n_items)
    # popularity: Zipf over a random order of the items
    ranks = rng.permutation(n_items) + 1
    popularity = np.floor(2000.0 / ranks**0.8).astype(np.int64) + rng.integers(0, 3, n_items)
    norm = 0.6 + 0.4 * np.log1p(popularity) / np.log1p(popularity.max())
    unreliable = np.full(n_items, -1)
    bad = rng.random(n_items) < UNRELIABLE_SHARE
    unreliable[bad] = rng.integers(0, len(CHANNELS), int(bad.sum()))
    item_emb, centres = np.empty((n_items, len(CHANNELS), DIM), dtype=np.float32), []
    for m in range(len(CHANNELS)):
        topic = _unit(rng, n_topics, DIM)
        cluster = 0.8 * topic[cluster_topic] + 0.6 * _unit(rng, n_clusters, DIM)
        centres.append(cluster)
        noise_scale = np.where(unreliable == m, 1.2, 0.35).astype(np.float32)[:, None]
        e = cluster[item_cluster] + noise_scale * _unit(rng, n_items, DIM)
        item_emb[:, m] = e * norm[:, None].astype(np.float32)
    # weights: softmax of logits that punish the unreliable modality
    logits = rng.normal(0.0, 0.4, (n_items, len(CHANNELS)))
    logits[np.arange(n_items), np.maximum(unreliable, 0)] -= np.where(unreliable >= 0, 2.0, 0.0)
    weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # users: a mixture of 1-3 clusters plus noise
    user_emb = np.zeros((n_users, len(CHANNELS), DIM), dtype=np.float32)
    n_pref, prefs = rng.integers(1, 4, n_users), rng.integers(0, n_clusters, (n_users, 3))
    mix = rng.dirichlet(np.ones(3), n_users) * (np.arange(3) < n_pref[:, None])
    mix /= mix.sum(axis=1, keepdims=True)
    for m in range(len(CHANNELS)):
        for j in range(3):
            user_emb[:, m] += mix[:, j : j + 1] * centres[m][prefs[:, j]]
        user_emb[:, m] += 0.3 * _unit(rng, n_users, DIM)
    # training items: drawn from the preferred clusters, weighted by popularity
    members = np.argsort(item_cluster, kind="stable")
    starts, seen_rows = np.searchsorted(item_cluster[members], np.arange(n_clusters + 1)), []
    for u in range(n_users):
        chosen = set()
        for j in range(int(n_pref[u])):
            pool = members[starts[prefs[u, j]] : starts[prefs[u, j] + 1]]
            if pool.size == 0:
                continue
            p = popularity[pool] / popularity[pool].sum()
            take = min(pool.size, max(1, seen_per_user // int(n_pref[u])))
            chosen.update(rng.choice(pool, size=take, replace=False, p=p).tolist())
        seen_rows.append(np.sort(np.fromiter(chosen, dtype=np.int64)))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([s.size for s in seen_rows])
    indices = np.concatenate(seen_rows).astype(np.int32)
    pos_count = np.bincount(indices, minlength=n_items).astype(np.int32)
    arrays = {"user_emb": user_emb, "item_emb": item_emb, "item_weights": weights.astype(np.float32),
              "item_pos_count": pos_count, "seen_indptr": indptr, "seen_indices": indices,
              "item_popularity": np.minimum(popularity + pos_count, 2**31 - 1).astype(np.int32)}
    topics = [f"topic-{t}" for t in range(n_topics)]
    meta = [{"title": f"Item {i}", "categories": [topics[cluster_topic[item_cluster[i]]]]} for i in range(n_items)]
    return arrays, meta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    arrays, meta = generate(args.items, args.users, seed=args.seed)
    name = f"synthetic-planted-{args.items}-{args.users}-{args.seed}"
    manifest = {"model": "margo", "channels": [{"name": c, "feature_dim": DIM} for c in CHANNELS],
                "dataset": {"name": name, "fingerprint": name}, "metrics": {}, "generator": "bench/synth_bundle.py"}
    print(write_bundle(args.out, manifest=manifest, arrays=arrays, user_ids=[f"u{u}" for u in range(args.users)],
                       item_ids=[f"i{i}" for i in range(args.items)], item_meta=meta, overwrite=True))


if __name__ == "__main__":
    main()
