"""The input of an item fold-in (trainer/foldin/items.py): raw features per modality,
checked before any math so that a bad request names the item and modality."""

from __future__ import annotations

import numpy as np

from trainer.bundle_foldin import FoldInInputError


def check_features(
    features: dict[str, np.ndarray], modalities: list[str], dims: dict[str, int]
) -> dict[str, np.ndarray]:
    """float32 [n, f_m] per modality, or FoldInInputError naming the item and modality."""
    if not isinstance(features, dict):
        raise FoldInInputError("features must map each modality to an array")
    unknown = sorted(set(features) - set(modalities))
    if unknown:
        raise FoldInInputError(
            f"modality {unknown[0]!r} is not one of this model's {modalities}",
            modality=unknown[0],
        )
    out: dict[str, np.ndarray] = {}
    n = None
    for m in modalities:
        if m not in features:
            raise FoldInInputError(f"modality {m!r}: features missing", modality=m)
        try:
            x = np.asarray(features[m], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise FoldInInputError(f"modality {m!r}: not numeric ({exc})", modality=m) from exc
        x = x[None, :] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != dims[m]:
            raise FoldInInputError(
                f"modality {m!r}: expected {dims[m]} values per item, "
                f"got shape {tuple(np.shape(features[m]))}",
                modality=m,
            )
        if n is not None and x.shape[0] != n:
            raise FoldInInputError(
                f"modality {m!r}: {x.shape[0]} items, other modalities have {n}", modality=m
            )
        n = x.shape[0]
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            j = int(np.argmax(bad))
            raise FoldInInputError(
                f"item {j}, modality {m!r}: features contain NaN or inf", item=j, modality=m
            )
        out[m] = x
    return out
