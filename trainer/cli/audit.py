"""``margo audit``: the training-free content audit (trainer/audit.py) written as a CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainer.cli.parsing import csv_list
from trainer.errors import ConfigError


def add(sub: Any) -> None:
    au = sub.add_parser(
        "audit",
        help="rank (item, modality) content by how little it agrees with the item's interactions",
        description="Training-free content audit (trainer/audit.py): per item and modality, the "
        "correlation between the item's collaborative similarity row and its content similarity "
        "row. Swapped or wrong content scores low. Writes a CSV sorted most suspicious first.",
    )
    au.add_argument("--data", type=Path, required=True, help="dataset bundle folder")
    au.add_argument("--out", type=Path, required=True, help="CSV to write")
    au.add_argument(
        "--modalities", type=csv_list, default=None, help="comma-separated (default all)"
    )
    au.add_argument(
        "--chunk", type=int, default=1024, help="items per block (memory ~ chunk x items x 16 B)"
    )
    au.add_argument("--no-progress", action="store_true", help="no progress bar")
    au.set_defaults(func=cmd_audit)


def cmd_audit(a: argparse.Namespace) -> int:
    import csv

    import numpy as np
    from tqdm.auto import tqdm

    from trainer.atomic import atomic_file
    from trainer.audit import content_consistency
    from trainer.data.dataset import load_dataset

    if a.chunk < 1:
        raise ConfigError(f"--chunk {a.chunk}: must be at least 1")
    data = load_dataset(a.data, a.modalities)
    item_users = data.train_matrix().T.tocsr()
    positives = np.asarray(item_users.sum(1)).ravel().astype(int)
    ids = data.item_ids or [str(i) for i in range(data.n_items)]
    rows: list[tuple[str, str, float, int]] = []
    with tqdm(total=data.n_items * len(data.features), desc="audit", disable=a.no_progress) as bar:
        for m, feat in data.features.items():
            try:
                score = content_consistency(item_users, feat, chunk=a.chunk, progress=bar.update)
            except ValueError as exc:
                raise ConfigError(f"--data {a.data}: {m}: {exc}") from exc
            rows += [(ids[i], m, float(score[i]), int(positives[i])) for i in range(data.n_items)]
    # most suspicious first; rows with nothing to compare (NaN) last
    rows.sort(key=lambda r: (np.isnan(r[2]), r[2]))
    with atomic_file(a.out, newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "item_id", "modality", "consistency", "train_interactions"])
        for k, (item, m, c, p) in enumerate(rows, 1):
            w.writerow([k, item, m, "" if np.isnan(c) else f"{c:.6f}", p])
    print(f"wrote {a.out}: {len(rows)} (item, modality) rows, most suspicious first")
    for k, (item, m, c, p) in enumerate(rows[:5], 1):
        print(f"  {k}. item {item} {m}: consistency {c:.3f} ({p} training interactions)")
    return 0
