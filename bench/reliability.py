"""Reliability benchmark: do the learned per-item weights find corrupted modality content?

Datasets (built once under WORKDIR/data)
  synth       ``import_synth`` (3,000 users, 1,500 items, 40,000 interactions, image 512-d +
              text 384-d, seed 0): corrupted = corrupt_fraction 0.2, a random modality per item
              replaced by noise (the importer's ground-truth mask); clean = corrupt_fraction 0
              with the same seed (same users, items, interactions and split)
  mlsmall     ../shared/data/mlsmall-mmrec (clean) and a copy whose `text` rows of a random
              20% of items are replaced by the rows of other random items (seed 7), mask kept
  mlsmall-image   the same with the `image` slot (genres + year) swapped instead

Scores
  ROC-AUC of 1 - w_i^m at telling corrupted (item, modality) pairs from clean ones (synth: every
  (item, modality) pair is a sample; mlsmall: every item's swapped modality), for fusion-learned
  and margo;
  the training-free detector of REFERENCE-NUMBERS.md (per item, Pearson correlation between its
  row of item-item cosine on the training matrix and its row of item-item cosine of the modality
  features; low correlation = suspicious), plus "mean content similarity to the k nearest
  collaborative neighbours"; a combined score (mean of the two rank-normalised scores).
  Test Recall@20 of fusion-sum / fusion-learned / margo on clean and corrupted data.

Selection over seeds: on synth the margo grid also runs with seeds 1 and 2 (--selection-seeds)
and a config is chosen by mean validation Recall@20 (a fair choice, less noisy than one seed).

Configs: the trainer defaults (mixed item graph, alpha 0.1, weight_lr = lr) and a small grid
for detection (cfg.per_channel_graph, alpha, weight_lr); 1 seed; the clean data is run for the
default config and for the grid's best config (by validation Recall@20 and by AUC).

    .venv/bin/python bench/reliability.py --quick   # smoke check
    .venv/bin/python bench/reliability.py           # full (--jobs 2)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

NAME = "reliability"
SYNTH = {
    "n_users": 3000,
    "n_items": 1500,
    "n_interactions": 40000,
    "modalities": {"image": 512, "text": 384},
}
SWAP_FRACTION, SWAP_SEED = 0.2, 7
# mlsmall variants: which modality's rows are swapped (REFERENCE-NUMBERS.md measures both)
SWAPPED = {"mlsmall": "text", "mlsmall-image": "image"}
# (graph, alpha, weight_lr) of the grid; the first margo entry is the trainer default
# margo (graph, alpha, weight_lr, lr_stage2) and fusion-learned (graph, weight_lr, lr_stage2);
# None = the trainer default (weight_lr = stage lr; lr_stage2 = lr = 1e-3). The first margo entry
# is the trainer default. lr_stage2 1e-4 (the paper's lr) keeps Theta nearly fixed in stage II
# while the weights move fast.
MARGO_GRID = [
    ("mixed", 0.1, None, None),
    ("per-channel", 1.0, 0.1, None),
    ("per-channel", 0.1, None, None),
    ("per-channel", 1.0, 0.1, 1e-4),
    ("mixed", 1.0, 0.1, 1e-4),
    ("per-channel", 1.0, 1.0, 1e-4),
    ("mixed", 1.0, 0.01, None),
    ("per-channel", 1.0, 0.01, None),
]
FL_GRID = [
    ("mixed", None, None),
    ("per-channel", None, None),
    ("per-channel", 0.1, None),
    ("per-channel", 0.1, 1e-4),
    ("mixed", 0.1, 1e-4),
    ("per-channel", 1.0, 1e-4),
    ("mixed", 0.01, None),
    ("per-channel", 0.01, None),
]
# CPU budget on the shared 2-core machine: stage caps below the quality benchmark's 300/20
MAX_EPOCHS, PATIENCE = 100, 10
REF_DETECTOR = {
    "text": {"knn10/20/50": (0.669, 0.659, 0.639), "corr": 0.798},
    "image": {"knn10/20/50": (0.722, 0.729, 0.709), "corr": 0.792},
}


# -- datasets ------------------------------------------------------------------------------------
def build_datasets(args: argparse.Namespace, log) -> dict[str, dict[str, str]]:
    """name -> {"clean": path, "corrupt": path}."""
    from trainer.data import import_synth, load_dataset

    root = args.workdir / "data"
    out: dict[str, dict[str, str]] = {}
    if "synth" in args.datasets:
        clean, mask_src, corrupt = (root / f"synth-rel-{k}" for k in ("clean", "mask", "corrupt"))
        if not (clean / "stats.json").is_file():
            import_synth(
                clean,
                **SYNTH,
                corrupt_fraction=0.0,
                seed=0,
                overwrite=True,
                progress=False,
                name="synth_rel_clean",
            )
        if not (corrupt / "stats.json").is_file():
            # The importer's own corrupted bundle (same seed) has the ground-truth mask, but its
            # clean `text` rows differ from the corrupt_fraction=0 bundle (the corruption noise
            # is drawn from the feature RNG stream before `text` is generated). To compare clean
            # vs corrupted on otherwise identical data, the importer's mask is applied to the
            # clean bundle with the importer's recipe: each marked row -> Gaussian noise with the
            # modality's column mean/std, then the modality's transform (ReLU / L2 norm).
            from trainer.data.importers.synth import _transform

            import_synth(
                mask_src,
                **SYNTH,
                corrupt_fraction=0.2,
                seed=0,
                overwrite=True,
                progress=False,
                name="synth_rel_mask",
            )
            d, mk = load_dataset(clean), load_dataset(mask_src)
            rng = np.random.default_rng(SWAP_SEED)
            feats = {}
            for m, f in d.features.items():
                f = f.copy()
                rows = np.flatnonzero(mk.corruption[m])
                mu, sd = f.mean(0), f.std(0)
                f[rows] = _transform(
                    m, (rng.standard_normal((rows.size, f.shape[1])) * sd + mu).astype(np.float32)
                )
                feats[m] = f
            _write_copy(
                d,
                corrupt,
                feats,
                mk.corruption,
                "synth_rel_corrupt",
                {
                    "source": str(clean),
                    "mask": f"import_synth corrupt_fraction 0.2 seed 0 ({mask_src})",
                    "corruption": "rows replaced by noise with the clean modality's column mean/std, then transform",
                },
            )
            log(f"[bench] generated {clean} and {corrupt}")
        out["synth"] = {"clean": str(clean), "corrupt": str(corrupt)}
    for ds, swapped in SWAPPED.items():
        if ds not in args.datasets:
            continue
        p = root / f"mlsmall-{swapped}swap"
        if not (p / "stats.json").is_file():
            d = load_dataset(args.mlsmall_mmrec)
            rng = np.random.default_rng(SWAP_SEED)
            n = d.n_items
            bad = rng.choice(n, size=round(SWAP_FRACTION * n), replace=False)
            src = (bad + rng.integers(1, n, size=bad.size)) % n  # another item, never itself
            feat = d.features[swapped].copy()
            feat[bad] = d.features[swapped][src]
            mask = np.zeros(n, dtype=bool)
            mask[bad] = True
            _write_copy(
                d,
                p,
                {**d.features, swapped: feat},
                {m: mask if m == swapped else np.zeros(n, dtype=bool) for m in d.features},
                f"mlsmall_{swapped}swap",
                {
                    "source": str(args.mlsmall_mmrec),
                    "corruption": f"{swapped} rows of {bad.size} items ({SWAP_FRACTION:.0%}, "
                    f"seed {SWAP_SEED}) replaced by rows of other random items",
                },
            )
            log(f"[bench] wrote {p}")
        out[ds] = {"clean": str(args.mlsmall_mmrec), "corrupt": str(p)}
    return out


def _write_copy(
    d: Any, out: Path, features: dict, corruption: dict, name: str, stats: dict
) -> None:
    """A copy of dataset ``d`` (same split and ids) with other features and a corruption mask."""
    from trainer.data import write_dataset

    inter = np.concatenate(
        [
            np.c_[d.train, np.zeros(len(d.train), np.int64)],
            np.c_[d.valid, np.ones(len(d.valid), np.int64)],
            np.c_[d.test, np.full(len(d.test), 2, np.int64)],
        ]
    )
    write_dataset(
        out,
        name=name,
        interactions=inter,
        features=features,
        user_ids=d.user_ids,
        item_ids=d.item_ids,
        item_meta=d.item_meta,
        corruption=corruption,
        overwrite=True,
        stats=stats,
    )


# -- steps ---------------------------------------------------------------------------------------------
def _cfg(args, graph: str, seed: int | None = None, **kw: Any) -> dict[str, Any]:
    return {
        "epochs": args.epochs,
        "patience": args.patience,
        "seed": args.seed if seed is None else seed,
        "per_channel_graph": graph == "per-channel",
        **kw,
    }


def stage1(args, ds: str, version: str, path: str, graph: str, seed: int | None = None) -> C.Step:
    meta: dict[str, Any] = {"dataset": ds, "version": version, "graph": graph}
    if seed is not None:
        meta["seed"] = seed
    return C.Step(
        "fusion-sum", path, _cfg(args, graph, seed, model="fusion-sum"), "stage1", meta=meta
    )


def branch(
    s1: C.Step, model: str, alpha: float | None, wlr: float | None, lr2: float | None = None
) -> C.Step:
    kw: dict[str, Any] = {"model": model, "weight_lr": wlr}
    if model == "margo":
        kw["alpha"] = alpha
    if lr2 is not None:  # only when set, so the keys of the other runs stay the same
        kw["lr_stage2"] = lr2
    meta = {**s1.meta, "alpha": alpha, "weight_lr": wlr, "lr_stage2": lr2}
    return C.Step(model, s1.data, {**s1.cfg, **kw}, "branch", s1.key, meta)


# -- scores ------------------------------------------------------------------------------------------------
def corruption_samples(data: Any) -> tuple[list[str], np.ndarray]:
    """Modalities that have corrupted items, and the label matrix [n_items, len(mods)]."""
    mods = [
        m
        for m in data.features
        if data.corruption and data.corruption.get(m) is not None and data.corruption[m].any()
    ]
    return mods, np.stack([data.corruption[m] for m in mods], 1)


def weight_auc(
    weights: np.ndarray, channels: list[str], mods: list[str], labels: np.ndarray
) -> float:
    """ROC-AUC of 1 - w_i^m over every (item, corrupted-candidate modality) pair."""
    s = np.stack([1.0 - weights[:, channels.index(m)] for m in mods], 1)
    return C.roc_auc(labels.ravel(), s.ravel())


def detector_scores(data: Any, m: str) -> dict[str, np.ndarray]:
    """Training-free suspicion scores per item for modality m (higher = more suspicious)."""
    from trainer.audit import content_consistency

    r = data.train_matrix().T.tocsr().astype(np.float64)  # [items, users]
    norms = np.sqrt(np.asarray(r.multiply(r).sum(1)).ravel())
    cf = (r @ r.T).toarray() / np.maximum(np.outer(norms, norms), 1e-12)
    f = data.features[m].astype(np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    fs = f @ f.T
    n = cf.shape[0]
    off = ~np.eye(n, dtype=bool)
    # the correlation score is the product's own audit (`margo audit`, trainer/audit.py)
    corr = content_consistency(data.train_matrix().T, data.features[m])
    out = {"corr": -np.nan_to_num(corr, nan=0.0)}
    order = np.argsort(-np.where(off, cf, -np.inf), axis=1)
    for k in (10, 20, 50):
        nb = order[:, :k]
        out[f"knn{k}"] = -np.take_along_axis(fs, nb, 1).mean(1)
    return out


def _key(st: C.Step) -> tuple:
    return (
        st.meta["graph"],
        st.meta.get("alpha"),
        st.meta.get("weight_lr"),
        st.meta.get("lr_stage2"),
    )


def _rank01(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return (rankdata(x) - 1) / max(len(x) - 1, 1)


# -- main -----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    C.add_common_args(p)
    p.add_argument(
        "--datasets",
        nargs="+",
        default=["synth", "mlsmall", "mlsmall-image"],
        help="synth, mlsmall (text rows swapped) and/or mlsmall-image (image-slot rows swapped; "
        "default all three)",
    )
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument(
        "--selection-seeds",
        nargs="*",
        type=int,
        default=[1, 2],
        help="extra seeds of the margo grid on the corrupted data of --selection-datasets, to "
        "choose a config by mean validation Recall@20 (default 1 2; none: off)",
    )
    p.add_argument(
        "--selection-datasets",
        nargs="*",
        default=["synth"],
        help="datasets that get the extra selection seeds (default synth)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=MAX_EPOCHS,
        help=f"max epochs per stage (default {MAX_EPOCHS})",
    )
    p.add_argument(
        "--patience", type=int, default=PATIENCE, help=f"early-stop patience (default {PATIENCE})"
    )
    p.add_argument(
        "--report-only", action="store_true", help="only rebuild the report from finished runs"
    )
    p.add_argument(
        "--mlsmall-mmrec", type=Path, default=C.MLSMALL_MMREC, help="MMRec-layout bundle"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 2
    info = C.machine_info(args.threads)
    log = C.make_logger(args.workdir / f"{NAME}.log")
    runs_dir = args.workdir / "runs"
    t0 = time.perf_counter()
    datasets = build_datasets(args, log)

    def run(steps: list[C.Step]) -> dict[str, dict]:
        return C.run_or_load(steps, args, runs_dir, log)

    # phase 1: the grid on corrupted data (+ the default config on clean data)
    plan: dict[str, dict[str, Any]] = {}
    steps: list[C.Step] = []
    for ds, paths in datasets.items():
        s1 = {g: stage1(args, ds, "corrupt", paths["corrupt"], g) for g in ("mixed", "per-channel")}
        c1 = stage1(args, ds, "clean", paths["clean"], "mixed")
        grid = [branch(s1[g], "margo", a, w, l2) for g, a, w, l2 in MARGO_GRID] + [
            branch(s1[g], "fusion-learned", None, w, l2) for g, w, l2 in FL_GRID
        ]
        clean_default = [branch(c1, "margo", 0.1, None), branch(c1, "fusion-learned", None, None)]
        extra = []  # (grid index, seed, step): the margo grid again for the selection seeds
        extra_s1: list[C.Step] = []
        if ds in args.selection_datasets:
            for seed in args.selection_seeds:
                s1x = {
                    g: stage1(args, ds, "corrupt", paths["corrupt"], g, seed)
                    for g in ("mixed", "per-channel")
                }
                extra_s1 += s1x.values()
                extra += [
                    (k, seed, branch(s1x[g], "margo", a, w, l2))
                    for k, (g, a, w, l2) in enumerate(MARGO_GRID)
                ]
        plan[ds] = {
            "s1": s1,
            "c1": c1,
            "grid": grid,
            "clean_default": clean_default,
            "extra": extra,
            "extra_s1": extra_s1,
        }
        nm = len(MARGO_GRID)
        steps += [
            s1["mixed"],
            grid[0],
            grid[nm],
            s1["per-channel"],
            grid[3],
            grid[nm + 3],
            grid[1],
            grid[nm + 1],
            c1,
            *clean_default,
            *grid,
        ]
    for pl in plan.values():  # after every dataset's main grid
        steps += [*pl["extra_s1"], *(st for _, _, st in pl["extra"])]
    res = run(steps)

    # phase 2: the clean-data twins of the grid's best margo configs
    from trainer.data import load_dataset

    report: dict[str, Any] = {}
    steps2: list[C.Step] = []
    for ds, paths in datasets.items():
        data = load_dataset(paths["corrupt"])
        mods, labels = corruption_samples(data)
        pl = plan[ds]
        rows = []
        for st in [pl["s1"]["mixed"], pl["s1"]["per-channel"], *pl["grid"]]:
            r = res.get(st.key)
            if r is None:
                continue
            auc = auc_last = None
            if r.get("weights_file"):
                auc = weight_auc(np.load(runs_dir / r["weights_file"]), r["channels"], mods, labels)
            if r.get("weights_last_file"):
                auc_last = weight_auc(
                    np.load(runs_dir / r["weights_last_file"]), r["channels"], mods, labels
                )
            rows.append({"step": st, "result": r, "auc": auc, "auc_last": auc_last})
        margos = [x for x in rows if x["step"].label == "margo"]
        best_valid = max(margos, key=lambda x: x["result"]["valid"]["recall@20"], default=None)
        best_auc = max(margos, key=lambda x: x["auc"], default=None)
        for best in {id(b): b for b in (best_valid, best_auc) if b}.values():
            st = best["step"]
            g = st.meta["graph"]
            c1 = stage1(args, ds, "clean", paths["clean"], g)
            l2 = st.meta.get("lr_stage2")
            twins = [c1, branch(c1, "margo", st.meta["alpha"], st.meta["weight_lr"], l2)]
            fl = next(
                (
                    x["step"]
                    for x in rows
                    if x["step"].label == "fusion-learned"
                    and x["step"].meta["graph"] == g
                    and x["step"].meta["weight_lr"] == st.meta["weight_lr"]
                    and x["step"].meta.get("lr_stage2") == l2
                ),
                None,
            )
            twins.append(
                branch(
                    c1,
                    "fusion-learned",
                    None,
                    fl.meta["weight_lr"] if fl else None,
                    l2 if fl else None,
                )
            )
            steps2 += twins
        report[ds] = {
            "selection": _selection(pl, res, rows, args.seed, runs_dir, mods, labels),
            "mods": mods,
            "rows": rows,
            "best_valid": best_valid,
            "best_auc": best_auc,
            "data": data,
        }
    res.update(run(steps2))

    # detectors and the clean/corrupt comparison
    out_json: dict[str, Any] = {
        "machine": info,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "datasets": {},
    }
    md = ["# Reliability benchmark (`bench/reliability.py`)\n", C.machine_md(info), ""]
    if args.quick:
        md.append(
            f"**QUICK SMOKE RUN** ({args.epochs} epochs per stage): numbers are not meaningful.\n"
        )
    md.append(
        f"One training seed ({args.seed}); early stop on validation Recall@20, patience {args.patience}, at most "
        f"{args.epochs} epochs per stage; fusion-learned / margo continue from the fusion-sum stage-I checkpoint "
        "of the same data and graph (stage II only, as in bench/quality.py). AUC: ROC-AUC of 1 - w_i^m for "
        "corrupted vs clean (item, modality) pairs (synth: both modalities pooled; mlsmall / mlsmall-image: "
        "every item's weight of the swapped modality). Selection caveat: 'best by AUC' picks the config with the ground-truth labels (an "
        "oracle choice, optimistic); 'best by valid R@20' is a fair choice. 'AUC last-epoch w' scores the weights after the "
        "last stage-II epoch instead of the best-validation epoch's (they differ when early stopping kept an "
        "earlier epoch).\n"
    )
    for ds, rep in report.items():
        data, mods = rep["data"], rep["mods"]
        labels = np.stack([data.corruption[m] for m in mods], 1)
        det = {m: detector_scores(data, m) for m in mods}
        det_auc = {
            m: {k: C.roc_auc(data.corruption[m], v) for k, v in det[m].items()} for m in mods
        }
        pooled = {
            k: C.roc_auc(labels.ravel(), np.stack([_rank01(det[m][k]) for m in mods], 1).ravel())
            for k in ("corr", "knn10", "knn20", "knn50")
        }
        rows_md, rows_js = [], []

        def clean_of(st):
            return next(
                (
                    r
                    for s, r in ((s, res.get(s.key)) for s in steps + steps2)  # noqa: E731
                    if r
                    and s.meta.get("version") == "clean"
                    and s.label == st.label
                    and s.meta.get("dataset") == st.meta.get("dataset")
                    and s.meta.get("graph") == st.meta.get("graph")
                    and s.meta.get("alpha") == st.meta.get("alpha")
                    and s.meta.get("weight_lr") == st.meta.get("weight_lr")
                    and s.meta.get("lr_stage2") == st.meta.get("lr_stage2")
                ),
                None,
            )

        for row in rep["rows"]:
            st, r = row["step"], row["result"]
            cl = clean_of(st)
            combined = None
            if r.get("weights_file"):
                w = np.load(runs_dir / r["weights_file"])
                comb = np.stack(
                    [
                        0.5 * _rank01(1 - w[:, r["channels"].index(m)])
                        + 0.5 * _rank01(det[m]["corr"])
                        for m in mods
                    ],
                    1,
                )
                combined = C.roc_auc(labels.ravel(), comb.ravel())
            tags = []
            if rep["best_valid"] is row:
                tags.append("best margo by valid R@20")
            if rep["best_auc"] is row:
                tags.append("best margo by AUC (oracle)")
            if st.label == "margo" and _key(st) == MARGO_GRID[0]:
                tags.append("trainer default")
            t_c = r["test"]["recall@20"]
            t_k = cl["test"]["recall@20"] if cl else None
            js = {
                "model": st.label,
                "graph": st.meta["graph"],
                "alpha": st.meta.get("alpha"),
                "weight_lr": st.meta.get("weight_lr"),
                "lr_stage2": st.meta.get("lr_stage2"),
                "auc": row["auc"],
                "auc_last_epoch": row["auc_last"],
                "auc_combined_with_detector": combined,
                "valid_r20_corrupt": r["valid"]["recall@20"],
                "test_r20_corrupt": t_c,
                "test_r20_clean": t_k,
                "r20_lost": (t_k - t_c) if t_k is not None else None,
                "stages": [(s["stage"], s["best_epoch"], s["epochs_run"]) for s in r["stages"]],
                "seconds": r["seconds"],
                "tags": tags,
                "run": r["key"],
            }
            rows_js.append(js)
            rows_md.append(
                [
                    st.label,
                    st.meta["graph"],
                    st.meta.get("alpha") if st.label == "margo" else "–",
                    st.meta.get("weight_lr") or "lr",
                    st.meta.get("lr_stage2") or "lr",
                    row["auc"],
                    row["auc_last"],
                    combined,
                    r["valid"]["recall@20"],
                    t_c,
                    t_k,
                    js["r20_lost"],
                    " ".join(f"{a}{b}/{c}" for a, b, c in js["stages"]),
                    ", ".join(tags),
                ]
            )
        md.append(f"## {ds}\n")
        md.append(f"Corrupted data: {paths_note(ds, data, mods)}\n")
        md.append(
            C.md_table(
                [
                    "model",
                    "item graph",
                    "alpha",
                    "weight_lr",
                    "lr_stage2",
                    "AUC (1 - w)",
                    "AUC last-epoch w",
                    "AUC w + detector",
                    "valid R@20 (corr.)",
                    "test R@20 corrupted",
                    "test R@20 clean",
                    "R@20 lost",
                    "epochs best/run",
                    "note",
                ],
                rows_md,
            )
            + "\n"
        )
        md.append(
            "Training-free detector on the same corrupted data (our measurement; REFERENCE-NUMBERS.md figures "
            "are for mlsmall-mmrec with the text or image slot corrupted):\n"
        )
        drows = []
        for m in mods:
            a = det_auc[m]
            ref = REF_DETECTOR.get(m) if ds in SWAPPED else None
            drows.append(
                [
                    m,
                    f"{a['knn10']:.3f} / {a['knn20']:.3f} / {a['knn50']:.3f}",
                    f"{a['corr']:.3f}",
                    (
                        f"{' / '.join(f'{x:.3f}' for x in ref['knn10/20/50'])}; corr {ref['corr']:.3f}"
                        if ref
                        else "–"
                    ),
                ]
            )
        if len(mods) > 1:
            drows.append(
                [
                    "pooled (rank-normalised per modality)",
                    f"{pooled['knn10']:.3f} / {pooled['knn20']:.3f} / {pooled['knn50']:.3f}",
                    f"{pooled['corr']:.3f}",
                    "–",
                ]
            )
        md.append(
            C.md_table(
                [
                    "corrupted modality",
                    "mean content sim. to 10/20/50 CF neighbours: AUC",
                    "correlation of the two similarity rows: AUC",
                    "reference",
                ],
                drows,
            )
            + "\n"
        )
        pop_md, pop_js = _by_popularity(rep, runs_dir, data, mods, labels, det)
        md.append(pop_md)
        md.append(_targets(rows_js, pooled["corr"] if len(mods) > 1 else det_auc[mods[0]]["corr"]))
        if rep["selection"]:
            md.append(_selection_md(rep["selection"], rows_js))
        png = _plot(args, ds, rep, runs_dir, mods, data)
        if png:
            md.append(f"![weights of corrupted vs clean items]({Path(png).name})\n")
        out_json["datasets"][ds] = {
            "rows": rows_js,
            "detector_auc": det_auc,
            "detector_auc_pooled": pooled,
            "corrupted_modalities": mods,
            "n_corrupted": {m: int(data.corruption[m].sum()) for m in mods},
            "auc_by_popularity": pop_js,
            "selection_over_seeds": rep["selection"],
        }
    t_wall = time.perf_counter() - t0
    all_runs = [res[s.key] for s in {s.key: s for s in steps + steps2}.values() if s.key in res]
    md.append(
        f"Compute: {len(all_runs)} training runs, {sum(r['own_seconds'] for r in all_runs) / 60:.1f} process-minutes "
        f"(1 torch thread each, shared machine); wall time of this invocation {t_wall / 60:.1f} min"
        f"{' (report only: the runs were trained earlier)' if args.report_only else ''}.\n"
    )
    out_json["wall_seconds"] = round(t_wall, 1)
    C.atomic_write_json(args.results / f"{NAME}.json", out_json)
    md.append(
        "\nTraining plug-ins (CKD, SEA): their reliability rows are in [plugins.md](plugins.md) (`bench/plugins.py`)."
    )
    C.atomic_write_text(args.results / f"{NAME}.md", "\n".join(md))
    log(f"[bench] wrote {args.results / NAME}.json/.md in {t_wall:.0f}s")
    return 0


def _selection(
    pl: dict, res: dict, rows: list[dict], seed: int, runs_dir: Path, mods: list[str], labels: Any
) -> list[dict]:
    """Per margo config of the grid: validation R@20 and AUC for every seed run on the
    corrupted data (the main seed's grid plus the selection seeds)."""
    if not pl["extra"]:
        return []
    main = {id(x["step"]): x for x in rows}
    out = []
    for k, (g, a, w, l2) in enumerate(MARGO_GRID):
        valid, auc = {}, {}
        first = main.get(id(pl["grid"][k]))
        if first is not None:
            valid[seed], auc[seed] = first["result"]["valid"]["recall@20"], first["auc"]
        for kk, sd, st in pl["extra"]:
            r = res.get(st.key)
            if kk != k or r is None or not r.get("weights_file"):
                continue
            valid[sd] = r["valid"]["recall@20"]
            auc[sd] = weight_auc(np.load(runs_dir / r["weights_file"]), r["channels"], mods, labels)
        if valid:
            out.append(
                {
                    "graph": g,
                    "alpha": a,
                    "weight_lr": w,
                    "lr_stage2": l2,
                    "valid": valid,
                    "auc": auc,
                    "valid_mean": float(np.mean(list(valid.values()))),
                    "auc_mean": float(np.mean(list(auc.values()))),
                }
            )
    return out


def _selection_md(sel: list[dict], rows_js: list[dict]) -> str:
    seeds = sorted({sd for x in sel for sd in x["valid"]})
    best = max(sel, key=lambda x: x["valid_mean"])
    rows = [
        [
            x["graph"],
            x["alpha"],
            x["weight_lr"] or "lr",
            x["lr_stage2"] or "lr",
            " / ".join(f"{x['valid'].get(sd, float('nan')):.4f}" for sd in seeds),
            x["valid_mean"],
            " / ".join(f"{x['auc'].get(sd, float('nan')):.3f}" for sd in seeds),
            x["auc_mean"],
            "best by mean valid R@20" if x is best else "",
        ]
        for x in sel
    ]
    fl = [r for r in rows_js if r["model"] == "fusion-learned" and r["auc"] is not None]
    fl_best = max(fl, key=lambda r: r["auc"], default=None)
    line = (
        f"- margo, config chosen by mean validation R@20 over seeds {seeds} ({best['graph']} graph, "
        f"alpha {best['alpha']}, weight_lr {best['weight_lr'] or 'lr'}, lr_stage2 "
        f"{best['lr_stage2'] or 'lr'}): mean AUC {best['auc_mean']:.3f} — >= 0.8: "
        f"**{'holds' if best['auc_mean'] >= 0.8 else 'does not hold'}**"
    )
    if fl_best:
        line += (
            f"; above the best fusion-learned AUC of the seed-{seeds[0]} grid ({fl_best['auc']:.3f}): "
            f"**{'yes' if best['auc_mean'] > fl_best['auc'] else 'no'}**"
        )
    return (
        f"Selection over seeds (corrupted data; the margo grid again with seeds {seeds[1:]}; a "
        "fair choice: validation only, less noisy than one seed):\n\n"
        + C.md_table(
            [
                "item graph",
                "alpha",
                "weight_lr",
                "lr_stage2",
                f"valid R@20, seeds {seeds}",
                "mean",
                "AUC per seed",
                "mean AUC",
                "note",
            ],
            rows,
        )
        + "\n\n"
        + line
        + "\n"
    )


def _by_popularity(
    rep: dict, runs_dir: Path, data: Any, mods: list[str], labels: np.ndarray, det: dict
) -> tuple[str, list[dict]]:
    """AUC within item-popularity terciles: how much the weights' evidence depends on how often
    an item is trained on (each item's weight only moves when it is in a batch)."""
    pop = np.bincount(data.train[:, 1], minlength=data.n_items)
    cuts = np.quantile(pop, [1 / 3, 2 / 3])
    bucket = np.digitize(pop, cuts)  # 0 rare, 1 middle, 2 popular
    scorers: list[tuple[str, np.ndarray]] = []
    for tag, row in (
        ("margo, best by valid R@20", rep["best_valid"]),
        ("margo, best by AUC", rep["best_auc"]),
    ):
        r = row["result"] if row else None
        if r and r.get("weights_file"):
            w = np.load(runs_dir / r["weights_file"])
            scorers.append((tag, np.stack([1 - w[:, r["channels"].index(m)] for m in mods], 1)))
    scorers.append(
        ("training-free detector (corr)", np.stack([_rank01(det[m]["corr"]) for m in mods], 1))
    )
    names = ["rare", "middle", "popular"]
    rows, out = [], []
    for tag, score in scorers:
        aucs = [
            C.roc_auc(labels[bucket == b].ravel(), score[bucket == b].ravel()) for b in range(3)
        ]
        rows.append([tag, *aucs])
        out.append({"scorer": tag, **dict(zip(names, aucs, strict=True))})
    lo = [int(pop.min()), *(int(c) for c in cuts), int(pop.max())]
    head = [
        "scorer",
        f"rare items ({lo[0]}-{lo[1]} train interactions)",
        f"middle ({lo[1]}-{lo[2]})",
        f"popular ({lo[2]}-{lo[3]})",
    ]
    md = (
        "AUC within item-popularity terciles (training interactions per item):\n\n"
        + C.md_table(head, rows)
        + "\n"
    )
    return md, out


def paths_note(ds: str, data: Any, mods: list[str]) -> str:
    n = {m: int(data.corruption[m].sum()) for m in mods}
    if ds == "synth":
        return (
            f"`import_synth` {SYNTH}, seed 0, corrupt_fraction 0 = clean; corrupted = the same bundle with the "
            f"ground-truth mask of `import_synth(corrupt_fraction=0.2)` (a random modality per item; corrupted items per "
            f"modality {n}) applied with the importer's recipe (noise with the column mean/std, then ReLU / L2 norm), "
            "so clean and corrupted differ only in the corrupted rows"
        )
    m = SWAPPED[ds]
    return (
        f"mlsmall-mmrec, {m} rows of {n.get(m)} items replaced by other random items' rows "
        f"(seed {SWAP_SEED})"
    )


def _targets(rows: list[dict], det: float) -> str:
    def pick(tag: str) -> dict | None:
        return next((r for r in rows if tag in r["tags"]), None)

    fl = [r for r in rows if r["model"] == "fusion-learned" and r["auc"] is not None]
    fl_best = max(fl, key=lambda r: r["auc"], default=None)
    fs = [r for r in rows if r["model"] == "fusion-sum"]
    out = ["Targets (issue 2):\n"]
    for tag in ("trainer default", "best margo by valid R@20", "best margo by AUC (oracle)"):
        r = pick(tag)
        if not r:
            continue
        fl_same = next(
            (
                x
                for x in fl
                if x["graph"] == r["graph"]
                and x["weight_lr"] == r["weight_lr"]
                and x["lr_stage2"] == r["lr_stage2"]
            ),
            None,
        ) or next((x for x in fl if x["graph"] == r["graph"]), None)
        fs_same = next((x for x in fs if x["graph"] == r["graph"]), None)
        line = (
            f"- margo, {tag} ({r['graph']} graph, alpha {r['alpha']}, weight_lr {r['weight_lr'] or 'lr'}, "
            f"lr_stage2 {r['lr_stage2'] or 'lr'}): AUC "
            f"{r['auc']:.3f} — >= 0.8: **{'holds' if r['auc'] >= 0.8 else 'does not hold'}**"
        )
        if fl_same:
            line += (
                f"; vs fusion-learned (same graph, weight_lr {fl_same['weight_lr'] or 'lr'}, lr_stage2 "
                f"{fl_same['lr_stage2'] or 'lr'}) {fl_same['auc']:.3f}: "
                f"**{'above' if r['auc'] > fl_same['auc'] else 'not above'}** ({r['auc'] - fl_same['auc']:+.3f})"
            )
        line += f"; vs training-free detector {det:.3f}: {r['auc'] - det:+.3f}"
        if r["r20_lost"] is not None and fs_same and fs_same["r20_lost"] is not None:
            line += (
                f"; R@20 lost to corruption: margo {r['r20_lost']:+.4f} vs fusion-sum {fs_same['r20_lost']:+.4f} "
                f"(**{'less' if r['r20_lost'] < fs_same['r20_lost'] else 'not less'}**)"
            )
        out.append(line)
    if fl_best:
        out.append(
            f"- best fusion-learned AUC in the grid: {fl_best['auc']:.3f} ({fl_best['graph']}, weight_lr "
            f"{fl_best['weight_lr'] or 'lr'})"
        )
    return (
        "\n".join(out)
        + "\n\nR@20 lost = clean test R@20 - corrupted test R@20 (positive = hurt by corruption); "
        "one seed, so differences of ~0.005 are within seed noise.\n"
    )


def _plot(args, ds: str, rep: dict, runs_dir: Path, mods: list[str], data: Any) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = []
    for row in rep["rows"]:
        if row["auc"] is None:
            continue
        t = row["step"]
        if (
            (t.label == "fusion-learned" and t.meta["graph"] == "mixed")
            or rep["best_auc"] is row
            or (t.label == "margo" and _key(t) == MARGO_GRID[0])
        ):
            show.append(row)
    if not show:
        return None
    fig, axes = plt.subplots(1, len(show), figsize=(3.8 * len(show), 3.0), squeeze=False)
    for ax, row in zip(axes[0], show, strict=True):
        r = row["result"]
        w = np.load(runs_dir / r["weights_file"])
        for m in mods:
            wm = w[:, r["channels"].index(m)]
            bad = data.corruption[m]
            ax.hist(wm[~bad], bins=40, range=(0, 1), alpha=0.5, density=True, label=f"w^{m}, clean")
            ax.hist(
                wm[bad], bins=40, range=(0, 1), alpha=0.6, density=True, label=f"w^{m}, corrupted"
            )
        t = row["step"]
        ax.set_title(
            f"{t.label} {t.meta['graph']} a={t.meta.get('alpha')} wlr={t.meta.get('weight_lr')}\nAUC {row['auc']:.3f}",
            fontsize=8,
        )
        ax.set_xlabel("item weight")
        ax.legend(fontsize=6)
    fig.tight_layout()
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{NAME}_weights_{ds}.png"
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return str(out)


if __name__ == "__main__":
    raise SystemExit(main())
