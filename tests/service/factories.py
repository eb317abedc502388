"""Synthetic model bundles for the service tests (written with trainer.bundle.write_bundle).

Users and items fall into a few planted groups, so rankings have structure; everything is
deterministic given the seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainer.bundle import write_bundle

CHANNELS = ("image", "text")


def item_id(i: int) -> str:
    return f"i{i}"


def user_id(u: int) -> str:
    return f"u{u}"


def categories_of(i: int) -> list[str]:
    """Every item is 'even' or 'odd' and in one of 'c0', 'c1', 'c2'; every 10th is 'rare'."""
    labels = ["even" if i % 2 == 0 else "odd", f"c{i % 3}"]
    if i % 10 == 0:
        labels.append("rare")
    return labels


def bundle_arrays(
    *,
    n_users: int,
    n_items: int,
    dim: int,
    n_channels: int = len(CHANNELS),
    seed: int = 0,
    seen_per_user: int = 5,
    groups: int = 4,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, n_channels, dim))
    item_group = rng.integers(0, groups, n_items)
    user_group = rng.integers(0, groups, n_users)
    item_emb = centres[item_group] + 0.5 * rng.standard_normal((n_items, n_channels, dim))
    user_emb = centres[user_group] + 0.5 * rng.standard_normal((n_users, n_channels, dim))
    logits = rng.standard_normal((n_items, n_channels))
    weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pos_count = rng.integers(0, 20, n_items)
    popularity = pos_count + rng.integers(0, 5, n_items)
    seen = [
        np.sort(rng.choice(n_items, size=min(seen_per_user, n_items), replace=False))
        for _ in range(n_users)
    ]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(s) for s in seen])
    return {
        "user_emb": user_emb.astype(np.float32),
        "item_emb": item_emb.astype(np.float32),
        "item_weights": weights.astype(np.float32),
        "item_pos_count": pos_count.astype(np.int32),
        "item_popularity": popularity.astype(np.int32),
        "seen_indptr": indptr,
        "seen_indices": np.concatenate(seen).astype(np.int32),
    }


def make_bundle(
    path: str | Path,
    *,
    n_users: int = 40,
    n_items: int = 300,
    dim: int = 8,
    seed: int = 0,
    channels: tuple[str, ...] = CHANNELS,
    seen_per_user: int = 5,
    created_at: str | None = None,
    extra_manifest: dict[str, Any] | None = None,
    extra_arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a bundle at ``path`` and return it."""
    arrays = bundle_arrays(
        n_users=n_users,
        n_items=n_items,
        dim=dim,
        n_channels=len(channels),
        seed=seed,
        seen_per_user=seen_per_user,
    ) | (extra_arrays or {})
    manifest: dict[str, Any] = {
        "model": "margo",
        "channels": [{"name": c, "feature_dim": dim} for c in channels],
        "dataset": {"fingerprint": f"synthetic-{seed}"},  # as trainer/export.py writes it
        "metrics": {"recall@20": 0.1 + seed / 100},
        **(extra_manifest or {}),
    }
    if created_at is not None:
        manifest["created_at"] = created_at
    return write_bundle(
        path,
        manifest=manifest,
        arrays=arrays,
        user_ids=[user_id(u) for u in range(n_users)],
        item_ids=[item_id(i) for i in range(n_items)],
        item_meta=[{"title": f"Item {i}", "categories": categories_of(i)} for i in range(n_items)],
    )


def corrupt(bundle: Path, name: str = "item_emb.npy") -> None:
    """Flip bytes in the middle of one file, so its checksum no longer matches."""
    target = bundle / name
    data = bytearray(target.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = bytes(b ^ 0xFF for b in data[mid : mid + 8])
    target.write_bytes(bytes(data))
