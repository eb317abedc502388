"""Trainer commands of the ``margo`` CLI: import, train, evaluate, audit.

    margo import movielens ../shared/data/ml-latest-small data/mlsmall
    margo import synth data/baby --users 19445 --items 7050 --interactions 160792
    margo train --data ../shared/data/mlsmall-mmrec --model margo --out models/margo-1
    margo evaluate --bundle models/margo-1 --data ../shared/data/mlsmall-mmrec
    margo audit --data ../shared/data/mlsmall-mmrec --out audit.csv

The service adds its own commands to the same parser (service/cli.py); ``python -m trainer``
runs the trainer's alone. Every MargoError ends the command with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from trainer.config import MODELS, TrainConfig
from trainer.errors import ConfigError, MargoError

EXIT_USAGE = 2


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _kv_floats(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in _csv_list(text):
        name, sep, value = part.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise argparse.ArgumentTypeError(f"expected name=number pairs, got {part!r}")
    return out


def _kv_lists(text: str) -> dict[str, list[str]]:
    """'text=title+plot,tags=tags' -> {'text': ['title', 'plot'], 'tags': ['tags']}."""
    out: dict[str, list[str]] = {}
    for part in _csv_list(text):
        name, sep, cols = part.partition("=")
        if not sep or not cols:
            raise argparse.ArgumentTypeError(f"expected modality=col1+col2, got {part!r}")
        out[name] = cols.split("+")
    return out


def _kv_paths(text: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for part in _csv_list(text):
        name, sep, path = part.partition("=")
        if not sep or not path:
            raise argparse.ArgumentTypeError(f"expected modality=path.npy, got {part!r}")
        out[name] = Path(path)
    return out


# -- import -------------------------------------------------------------------------------------
def _add_split_options(p: argparse.ArgumentParser, min_rating: float | None, k_core: int) -> None:
    p.add_argument(
        "--min-rating",
        type=float,
        default=min_rating,
        help=f"keep ratings >= this as implicit positives (default {min_rating}; "
        "a negative value keeps every rating)",
    )
    p.add_argument(
        "--k-core",
        type=int,
        default=k_core,
        help=f"iterative k-core filter on users and items, 0 = off (default {k_core})",
    )
    p.add_argument(
        "--seed", type=int, default=2026, help="seed of the per-user 8:1:1 split (default 2026)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _cmd_import_movielens(a: argparse.Namespace) -> int:
    from trainer.data.importers import import_movielens

    out = import_movielens(
        a.path,
        a.out,
        min_rating=None if a.min_rating < 0 else a.min_rating,
        k_core=a.k_core,
        seed=a.seed,
        with_tags=a.tags,
        overwrite=a.overwrite,
    )
    print(f"wrote dataset bundle {out}")
    return 0


def _cmd_import_csv(a: argparse.Namespace) -> int:
    from trainer.data.importers import import_csv

    out = import_csv(
        a.interactions,
        a.out,
        items_csv=a.items,
        user_col=a.user_col,
        item_col=a.item_col,
        rating_col=a.rating_col,
        timestamp_col=a.timestamp_col,
        min_rating=None if a.min_rating is None or a.min_rating < 0 else a.min_rating,
        text_cols=a.text or {},
        npy_features=a.features or {},
        title_col=a.title_col,
        category_col=a.category_col,
        k_core=a.k_core,
        seed=a.seed,
        overwrite=a.overwrite,
    )
    print(f"wrote dataset bundle {out}")
    return 0


def _cmd_import_synth(a: argparse.Namespace) -> int:
    from trainer.data.importers import import_synth

    out = import_synth(
        a.out,
        n_users=a.users,
        n_items=a.items,
        n_interactions=a.interactions,
        modalities=a.modalities,
        corrupt_fraction=a.corrupt_fraction,
        corrupt_modality=a.corrupt_modality,
        seed=a.seed,
        overwrite=a.overwrite,
    )
    print(f"wrote dataset bundle {out}")
    return 0


def _add_import(sub: Any) -> None:
    imp = sub.add_parser("import", help="turn raw data into a dataset bundle (MMRec layout)")
    isub = imp.add_subparsers(dest="source", required=True, metavar="SOURCE")

    ml = isub.add_parser("movielens", help="a MovieLens folder (ml-latest-small or ml-100k)")
    ml.add_argument("path", type=Path, help="folder with ratings.csv/movies.csv or u.data/u.item")
    ml.add_argument("out", type=Path, help="dataset bundle folder to write")
    ml.add_argument(
        "--tags", action="store_true", help="add a 'tags' modality (ml-latest-small only)"
    )
    _add_split_options(ml, 4.0, 5)
    ml.set_defaults(func=_cmd_import_movielens)

    cs = isub.add_parser(
        "csv", help="an interactions CSV plus item text columns and/or .npy features"
    )
    cs.add_argument("interactions", type=Path, help="CSV with a user and an item column")
    cs.add_argument("out", type=Path, help="dataset bundle folder to write")
    cs.add_argument("--items", type=Path, help="items CSV (one row per item, with the item column)")
    cs.add_argument("--user-col", default="user", help="user id column (default user)")
    cs.add_argument(
        "--item-col", default="item", help="item id column, in both CSVs (default item)"
    )
    cs.add_argument("--rating-col", help="rating column, needed by --min-rating")
    cs.add_argument("--timestamp-col", help="timestamp column (kept in the bundle)")
    cs.add_argument("--title-col", help="items CSV column shown as the item title")
    cs.add_argument("--category-col", help="items CSV column of pipe-separated category labels")
    cs.add_argument(
        "--text",
        type=_kv_lists,
        metavar="MOD=COL[+COL]...",
        help="text modalities encoded with MiniLM, e.g. text=title+description",
    )
    cs.add_argument(
        "--features",
        type=_kv_paths,
        metavar="MOD=FILE.npy,...",
        help="precomputed features, rows in items-CSV order (or sorted item ids)",
    )
    _add_split_options(cs, None, 0)
    cs.set_defaults(func=_cmd_import_csv)

    sy = isub.add_parser(
        "synth", help="synthetic data with planted preferences and corrupted modalities"
    )
    sy.add_argument("out", type=Path, help="dataset bundle folder to write")
    sy.add_argument("--users", type=int, default=19445, help="number of users (default 19445)")
    sy.add_argument("--items", type=int, default=7050, help="number of items (default 7050)")
    sy.add_argument(
        "--interactions", type=int, default=160792, help="distinct user-item pairs (default 160792)"
    )
    sy.add_argument(
        "--modalities",
        type=_kv_int_map,
        default={"image": 4096, "text": 384},
        metavar="MOD=DIM,...",
        help="modalities and sizes (default image=4096,text=384)",
    )
    sy.add_argument(
        "--corrupt-fraction",
        type=float,
        default=0.2,
        help="fraction of items with one modality replaced by noise (default 0.2)",
    )
    sy.add_argument(
        "--corrupt-modality", help="always corrupt this modality (default: a random one per item)"
    )
    sy.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    sy.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    sy.set_defaults(func=_cmd_import_synth)


def _kv_int_map(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in _kv_floats(text).items()}


# -- train ----------------------------------------------------------------------------------------
def _add_train(sub: Any) -> None:
    d = TrainConfig()
    tr = sub.add_parser(
        "train",
        help="train a model and export a model bundle",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tr.add_argument("--data", type=Path, required=True, help="dataset bundle folder (MMRec layout)")
    tr.add_argument("--out", type=Path, required=True, help="model bundle folder to write")
    tr.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    tr.add_argument("--model", choices=MODELS, default=d.model, help="model kind")
    tr.add_argument(
        "--modalities", type=_csv_list, help="comma-separated subset of the dataset's modalities"
    )
    tr.add_argument(
        "--id-channel", action="store_true", help="add a free ID channel (ALGORITHMS.md 1.9)"
    )
    tr.add_argument(
        "--no-two-stage",
        dest="two_stage",
        action="store_false",
        help="margo/fusion-learned: weights and L_cal from the first epoch",
    )
    tr.add_argument(
        "--no-stopgrad",
        dest="stopgrad",
        action="store_false",
        help="margo: let L_cal's gradient flow through z and gamma",
    )
    tr.add_argument(
        "--literal-g",
        dest="drop_invalid",
        action="store_false",
        help="margo: paper-literal g(x) = -e^6, keeping all-negative triplets (A1)",
    )
    tr.add_argument(
        "--paper-scale",
        dest="scale_weights",
        action="store_false",
        help="fuse with softmax weights as printed (halves stage-II scores for M=2) "
        "instead of M * softmax (A5's variant, default)",
    )
    tr.add_argument("--alpha", type=float, default=d.alpha, help="weight of L_cal")
    tr.add_argument(
        "--beta",
        "--reg-weight",
        dest="reg_weight",
        type=float,
        default=d.reg_weight,
        help="L2 regularisation weight",
    )
    tr.add_argument("--tau-conf", type=float, default=d.tau_conf, help="confidence scale of Eq. 7")
    tr.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    tr.add_argument(
        "--lr-stage2", type=float, default=None, help="stage-II learning rate (default: --lr)"
    )
    tr.add_argument(
        "--weight-lr",
        type=float,
        default=None,
        help="Adam learning rate of the per-item weight logits (default: the stage's)",
    )
    tr.add_argument("--batch-size", type=int, default=d.batch_size)
    tr.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs per stage")
    tr.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="early-stopping patience (validation checks)",
    )
    tr.add_argument(
        "--eval-every", type=int, default=d.eval_every, help="epochs between validation checks"
    )
    tr.add_argument("--dim", type=int, default=d.dim, help="embedding size per channel")
    tr.add_argument(
        "--layers", dest="n_layers", type=int, default=d.n_layers, help="LightGCN layers"
    )
    tr.add_argument(
        "--knn-k", type=int, default=d.knn_k, help="item-item kNN neighbours (incl. self)"
    )
    tr.add_argument(
        "--graph-weights",
        type=_kv_floats,
        metavar="MOD=W,...",
        help="item-graph mixing weights (default image=0.1, others share 0.9)",
    )
    tr.add_argument(
        "--per-channel-graph",
        action="store_true",
        help="propagate each channel over its own modality's kNN graph",
    )
    tr.add_argument("--seed", type=int, default=d.seed)
    tr.add_argument("--device", default=d.device, help="cpu or cuda[:N]")
    tr.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.add_argument(
        "--stage1-cache",
        type=Path,
        help="folder to keep/reuse the stage-I state of backbone models (same data, "
        "backbone settings and seed share it)",
    )
    tr.add_argument(
        "--report", type=Path, help="also write the run's metrics and timings to this JSON file"
    )
    _add_plugin_options(tr, d)
    tr.set_defaults(func=_cmd_train)


def _add_plugin_options(tr: argparse.ArgumentParser, d: TrainConfig) -> None:
    from trainer.plugins import PLUGINS

    g = tr.add_argument_group("training plug-ins (ALGORITHMS.md 2-4; README 'Training plug-ins')")
    g.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        choices=PLUGINS,
        default=None,
        help="add a training plug-in (repeatable: --plugin ckd --plugin sea)",
    )
    g.add_argument(
        "--plugin-cache",
        type=Path,
        help="folder to keep/reuse plug-in helpers (CKD teachers, keyed by dataset fingerprint)",
    )
    g.add_argument("--ckd-lambda-kd", type=float, default=d.ckd_lambda_kd, help="CKD: lambda_kd")
    g.add_argument("--ckd-lambda-g", type=float, default=d.ckd_lambda_g, help="CKD: lambda_g")
    g.add_argument("--ckd-tau", type=float, default=d.ckd_tau, help="CKD: tau_kd")
    g.add_argument(
        "--ckd-generic", type=int, default=d.ckd_generic, help="CKD: generic triples per step"
    )
    g.add_argument(
        "--ckd-reweight",
        choices=("paper", "none", "code"),
        default=d.ckd_reweight,
        help="CKD: counterfactual modality weights (paper) or none ('code' is refused: its "
        "per-sample weights are identically 1 in late fusion)",
    )
    g.add_argument(
        "--ckd-teacher",
        choices=("drop", "mean"),
        default=d.ckd_teacher,
        help="CKD teachers: drop the other modalities, or replace them by their mean feature",
    )
    g.add_argument(
        "--ckd-teacher-seed", type=int, default=d.ckd_teacher_seed, help="CKD: teachers' seed"
    )
    g.add_argument(
        "--ckd-stage2", action="store_true", help="CKD: also distil in stage II (an ablation)"
    )
    g.add_argument(
        "--ckd-stage2-scale",
        type=float,
        default=d.ckd_stage2_scale,
        help="CKD: lambda_kd multiplier in stage II",
    )
    g.add_argument("--sea-alpha", type=float, default=d.sea_alpha, help="SEA: alignment weight")
    g.add_argument("--sea-beta", type=float, default=d.sea_beta, help="SEA: distancing weight")
    g.add_argument("--sea-tau", type=float, default=d.sea_tau, help="SEA: alignment temperature")
    g.add_argument(
        "--sea-distance", choices=("club", "neg-l2"), default=d.sea_distance, help="SEA: distance"
    )
    g.add_argument(
        "--sea-align", choices=("solosim", "infonce"), default=d.sea_align, help="SEA: alignment"
    )
    g.add_argument(
        "--sea-club-steps",
        type=int,
        default=d.sea_club_steps,
        help="SEA: CLUB estimator inner steps per batch (paper 50)",
    )
    g.add_argument(
        "--sea-club-hidden", type=int, default=d.sea_club_hidden, help="SEA: q_theta hidden width"
    )
    g.add_argument(
        "--sea-scope",
        choices=("batch", "full"),
        default=d.sea_scope,
        help="SEA: losses on the batch's items (cheap) or on every item (the paper's code)",
    )


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(
        **{k: v for k, v in vars(a).items() if k in fields and v is not None}
    ).validate()


def _cmd_train(a: argparse.Namespace) -> int:
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
        a.report.parent.mkdir(parents=True, exist_ok=True)
        a.report.write_text(json.dumps(summary, indent=2))
    v, t = result.valid, result.test
    print(
        f"{cfg.model}: valid R@20 {v.get('recall@20', float('nan')):.4f} | "
        f"test R@20 {t['recall@20']:.4f} "
        f"N@20 {t['ndcg@20']:.4f} | {result.seconds:.1f}s | bundle {path}"
    )
    return 0


# -- evaluate -------------------------------------------------------------------------------------
def _add_evaluate(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluate", help="re-evaluate a model bundle on a dataset bundle (full ranking)"
    )
    ev.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
    ev.add_argument("--data", type=Path, required=True, help="the dataset bundle it was trained on")
    ev.add_argument("--split", choices=("valid", "test"), default="test")
    ev.add_argument(
        "--force", action="store_true", help="evaluate even if the dataset fingerprint differs"
    )
    ev.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from trainer.bundle import load_bundle
    from trainer.data.dataset import load_dataset
    from trainer.metrics import csr_from_pairs, evaluate_vectors

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


# -- audit ----------------------------------------------------------------------------------------
def _add_audit(sub: Any) -> None:
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
        "--modalities", type=_csv_list, default=None, help="comma-separated (default all)"
    )
    au.add_argument(
        "--chunk", type=int, default=1024, help="items per block (memory ~ chunk x items x 16 B)"
    )
    au.add_argument("--no-progress", action="store_true", help="no progress bar")
    au.set_defaults(func=_cmd_audit)


def _cmd_audit(a: argparse.Namespace) -> int:
    import csv
    import os
    import tempfile

    import numpy as np
    from tqdm.auto import tqdm

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
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{a.out.name}.", dir=a.out.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["rank", "item_id", "modality", "consistency", "train_interactions"])
            for k, (item, m, c, p) in enumerate(rows, 1):
                w.writerow([k, item, m, "" if np.isnan(c) else f"{c:.6f}", p])
        os.replace(tmp, a.out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"wrote {a.out}: {len(rows)} (item, modality) rows, most suspicious first")
    for k, (item, m, c, p) in enumerate(rows[:5], 1):
        print(f"  {k}. item {item} {m}: consistency {c:.3f} ({p} training interactions)")
    return 0


# -- entry points -------------------------------------------------------------------------------
def add_commands(subparsers: Any) -> None:
    """Register import/train/evaluate/audit on a ``margo`` parser's subparsers."""
    _add_import(subparsers)
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_audit(subparsers)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="margo", description="MARGO trainer: import data, train, evaluate.")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn expected errors into one line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MargoError as exc:
        print(f"margo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("margo: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
