"""``margo config``: the training config that ``--config FILE`` and flags give, validated.

    margo config --config configs/demo.json              every field, as JSON (a bundle saves this)
    margo config --config configs/demo.json --retrain    the POST /retrain body of the same options

``--retrain`` keeps the options set in the file or by flags (the rest stay the active model's)
and refuses one a retrain request cannot set (trainer.config.RETRAIN_FIELDS).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from trainer.cli.flags import add_config_options, config_from_args
from trainer.config import RETRAIN_FIELDS, TrainConfig, flag_name
from trainer.errors import ConfigError


def add(sub: Any) -> None:
    sc = sub.add_parser(
        "config",
        help="print the validated training config of --config FILE and flags (or its retrain)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sc.add_argument(
        "--retrain",
        action="store_true",
        help="print the POST /retrain request body (model + the options set) instead",
    )
    add_config_options(sc)
    sc.set_defaults(func=cmd_config)


def retrain_body(cfg: TrainConfig) -> dict[str, Any]:
    """``{"model": ..., "hyperparameters": {...}}`` of the fields set explicitly in ``cfg``."""
    values = cfg.to_dict()
    chosen = [f for f in TrainConfig.model_fields if f in cfg.model_fields_set and f != "model"]
    refused = [f for f in chosen if f not in RETRAIN_FIELDS]
    if refused:
        raise ConfigError(
            f"--retrain: {', '.join(map(flag_name, refused))} cannot be set by a retrain "
            f"(it may set {', '.join(RETRAIN_FIELDS)})"
        )
    return {"model": cfg.model, "hyperparameters": {f: values[f] for f in chosen}}


def cmd_config(a: argparse.Namespace) -> int:
    cfg = config_from_args(a)
    if a.retrain:
        print(json.dumps(retrain_body(cfg)))
    else:
        print(json.dumps(cfg.to_dict(), indent=2))
    return 0
