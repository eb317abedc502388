"""``margo train``: train a model and export a model bundle. Its training options are
generated from TrainConfig (trainer/cli/flags.py); only the run's own options are declared here."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from trainer.atomic import atomic_write_text
from trainer.cli.flags import add_config_options, config_from_args
from trainer.errors import ConfigError


def add(sub: Any) -> None:
    tr = sub.add_parser(
        "train",
        help="train a model and export a model bundle",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tr.add_argument("--data", type=Path, required=True, help="dataset bundle folder (MMRec layout)")
    tr.add_argument("--out", type=Path, required=True, help="model bundle folder to write")
    tr.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.add_argument(
        "--stage1-cache",
        type=Path,
        help="folder to keep/reuse the stage-I state of backbone models (same data, "
        "backbone settings and seed share it)",
    )
    tr.add_argument(
        "--plugin-cache",
        type=Path,
        help="folder to keep/reuse plug-in helpers (CKD teachers, keyed by dataset fingerprint)",
    )
    tr.add_argument(
        "--report", type=Path, help="also write the run's metrics and timings to this JSON file"
    )
    add_config_options(tr)
    tr.set_defaults(func=cmd_train)


def cmd_train(a: argparse.Namespace) -> int:
    from trainer.data.dataset import load_dataset
    from trainer.export import export_model
    from trainer.train import fit

    cfg = config_from_args(a)
    if a.out.exists() and not a.overwrite:
        raise ConfigError(f"--out {a.out}: already exists (use --overwrite to replace it)")
    data = load_dataset(a.data, cfg.modalities)
    result = fit(
        data,
        cfg,
        progress=not a.quiet,
        stage1_cache=a.stage1_cache,
        plugin_cache=a.plugin_cache,
    )
    path = export_model(result, data, cfg, a.out, overwrite=a.overwrite)
    summary = {
        "bundle": str(path),
        "model": cfg.model,
        "valid": result.valid,
        "test": result.test,
        "seconds": round(result.seconds, 2),
        "stages": [
            {"stage": s.stage, "best_epoch": s.best_epoch, "epochs_run": s.epochs_run}
            for s in result.stages
        ],
    }
    if a.report:
        atomic_write_text(a.report, json.dumps(summary, indent=2))
    v, t = result.valid, result.test
    print(
        f"{cfg.model}: valid R@20 {v.get('recall@20', float('nan')):.4f} | "
        f"test R@20 {t['recall@20']:.4f} "
        f"N@20 {t['ndcg@20']:.4f} | {result.seconds:.1f}s | bundle {path}"
    )
    return 0
