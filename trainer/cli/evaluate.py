"""``margo evaluate``: re-evaluate a model bundle on its dataset bundle (full ranking)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError


def add(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluate", help="re-evaluate a model bundle on a dataset bundle (full ranking)"
    )
    ev.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
    ev.add_argument("--data", type=Path, required=True, help="the dataset bundle it was trained on")
    ev.add_argument("--split", choices=("valid", "test"), default="test")
    ev.add_argument(
        "--force", action="store_true", help="evaluate even if the dataset fingerprint differs"
    )
    ev.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a: argparse.Namespace) -> int:
    from trainer.bundle import load_bundle
    from trainer.data.dataset import load_dataset
    from trainer.evaluate import evaluate_vectors  # trainer.metrics' protocol, torch top-k
    from trainer.metrics import csr_from_pairs

    bundle = load_bundle(a.bundle)
    data = load_dataset(a.data)
    fp = bundle.manifest.dataset.fingerprint
    if fp != data.fingerprint and not a.force:
        raise ConfigError(
            f"--data {a.data}: fingerprint differs from the one {a.bundle} was trained on "
            "(--force to go on)"
        )
    if (bundle.n_users, bundle.n_items) != (data.n_users, data.n_items):
        raise ConfigError(
            f"--data {a.data}: {data.n_users} users/{data.n_items} items, bundle has "
            f"{bundle.n_users}/{bundle.n_items}"
        )
    target = data.valid if a.split == "valid" else data.test
    metrics = evaluate_vectors(
        bundle.query_vectors(),
        bundle.item_vectors(),
        csr_from_pairs(data.train, data.n_users, data.n_items),
        csr_from_pairs(target, data.n_users, data.n_items),
    )
    print(json.dumps({"split": a.split, **metrics}, indent=2))
    return 0
