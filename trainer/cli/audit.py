"""``margo audit``: the reliability score per (item, modality) (trainer/reliability/) as a CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainer.cli.parsing import csv_list
from trainer.errors import ConfigError


def add(sub: Any) -> None:
    au = sub.add_parser(
        "audit",
        help="rank (item, modality) content by its reliability score, least reliable first",
        description="Content audit (trainer/reliability/): per item and modality a reliability "
        "score in [0, 1] with a confidence, combined from content-collaborative agreement, "
        "out-of-fold cross-modal consistency and, with --bundle, the model's Eq. 6 targets, by a "
        "combiner fit to find swaps injected into a copy of the content (no ground truth). "
        "Writes a CSV sorted most suspicious first, with every signal.",
    )
    au.add_argument("--data", type=Path, required=True, help="dataset bundle folder")
    au.add_argument("--out", type=Path, required=True, help="CSV to write")
    au.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="model bundle trained on --data: adds MARGO's Eq. 6 signal and its learned weights",
    )
    au.add_argument(
        "--modalities", type=csv_list, default=None, help="comma-separated (default all)"
    )
    au.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of folds and injected swaps (default: the one --bundle's score used, else 0)",
    )
    au.add_argument(
        "--chunk", type=int, default=1024, help="items per block (memory ~ chunk x items x 16 B)"
    )
    au.add_argument("--no-progress", action="store_true", help="no progress bar")
    au.set_defaults(func=cmd_audit)


def _model_arrays(path: Path, data: Any) -> tuple[Any, dict[str, Any]]:
    """The bundle's arrays for the score, and the score settings its export used (if any)."""
    from trainer.bundle import load_bundle
    from trainer.reliability import ModelArrays

    bundle = load_bundle(path)
    if (bundle.n_users, bundle.n_items) != (data.n_users, data.n_items):
        raise ConfigError(
            f"--bundle {path}: {bundle.n_users} users/{bundle.n_items} items, --data has "
            f"{data.n_users}/{data.n_items}"
        )
    if bundle.manifest.dataset.fingerprint not in (None, data.fingerprint):
        raise ConfigError(f"--bundle {path}: trained on another dataset than --data")
    arrays = ModelArrays(
        channels=list(bundle.channels),
        user_emb=bundle.arrays["user_emb"],
        item_emb=bundle.arrays["item_emb"],
        weights=bundle.arrays["item_weights"],
    )
    info = bundle.manifest.reliability
    return arrays, dict(info.method.get("config", {})) if info is not None else {}


def cmd_audit(a: argparse.Namespace) -> int:
    import csv

    import numpy as np
    from tqdm.auto import tqdm

    from trainer.atomic import atomic_file
    from trainer.data.dataset import load_dataset
    from trainer.reliability import ReliabilityConfig, score_items

    if a.chunk < 1:
        raise ConfigError(f"--chunk {a.chunk}: must be at least 1")
    data = load_dataset(a.data, a.modalities)
    model, used = _model_arrays(a.bundle, data) if a.bundle is not None else (None, {})
    # the settings the bundle's own score was computed with, so both give the same numbers
    settings = {**used, "chunk": a.chunk}
    if a.seed is not None or "seed" not in settings:
        settings["seed"] = a.seed or 0
    try:
        cfg = ReliabilityConfig(**settings)
    except ValueError as exc:
        raise ConfigError(f"--bundle {a.bundle}: its reliability settings: {exc}") from exc
    n_train = np.bincount(data.train[:, 1], minlength=data.n_items)
    ids = data.item_ids or [str(i) for i in range(data.n_items)]
    steps = (1 + cfg.inject_rounds) * len(data.features)
    with tqdm(total=steps, desc="audit", disable=a.no_progress) as bar:
        try:
            rel = score_items(data, model, cfg, progress=bar.update)
        except ValueError as exc:
            raise ConfigError(f"--data {a.data}: {exc}") from exc
    names = list(rel.signals)
    rows = [
        (float(rel.score[i, j]), i, j)
        for j in range(len(rel.modalities))
        for i in range(data.n_items)
    ]
    rows.sort()  # most suspicious (lowest score) first
    with atomic_file(a.out, newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "item_id", "modality", "score", "confidence", "train_interactions",
                    *names])
        for k, (s, i, j) in enumerate(rows, 1):
            sig = [rel.signals[n][i, j] for n in names]
            w.writerow([k, ids[i], rel.modalities[j], f"{s:.6f}", f"{rel.confidence[i, j]:.4f}",
                        int(n_train[i]), *("" if np.isnan(v) else f"{v:.6f}" for v in sig)])
    print(f"wrote {a.out}: {len(rows)} (item, modality) rows, most suspicious first "
          f"(self-check AUC on injected swaps: {rel.method['auc_on_injected_copies']})")
    for k, (s, i, j) in enumerate(rows[:5], 1):
        print(f"  {k}. item {ids[i]} {rel.modalities[j]}: score {s:.3f}, confidence "
              f"{rel.confidence[i, j]:.2f} ({n_train[i]} training interactions)")
    return 0
