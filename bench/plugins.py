"""Plug-in benchmark: CKD and SEA (trainer/plugins) on the backbone and on MARGO.

Parts (each resumable through the run store of bench/common.py):
  quality      ml-latest-small through our importer; rows fusion-sum (backbone), margo, and
               backbone+CKD, backbone+SEA, margo+CKD, margo+SEA, margo+CKD+SEA; test metrics
               at the best-validation epoch; margo rows continue from the stage I of the
               backbone row with the same plug-ins and seed (fit's stage-I cache)
  timing       seconds per training epoch (stage I and stage II) of margo, margo+CKD,
               margo+SEA, margo+CKD+SEA, measured side by side in one process, interleaved
               rounds, relative to plain margo (teachers loaded from the cache, their one-off
               training time reported apart)
  reliability  synthetic data with 20% of items having one modality replaced by noise: ROC-AUC
               of 1 - w_i^m for corrupted (item, modality) pairs, margo with and without plug-ins

Hyper-parameters: the backbone/MARGO settings chosen on ml-latest-small's validation split by
bench/quality.py (reg 1e-3, alpha 1.0) and the plug-ins' defaults (the papers' code defaults);
no plug-in sweep was run (see the report).

    .venv/bin/python bench/plugins.py --quick          # smoke check
    .venv/bin/python bench/plugins.py --seeds 0 1 2    # full
    .venv/bin/python bench/plugins.py --report-only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

NAME = "plugins"
ML_HP = {"reg_weight": 1e-3}  # bench/results/quality.md, ml-latest-small's own validation sweep
MARGO_KW = {"model": "margo", "alpha": 1.0}
SYNTH = {"n_users": 3000, "n_items": 1500, "n_interactions": 40000}
SYNTH_MODS = {"image": 512, "text": 384}
# reliability.py's best margo config on synth by AUC (per-channel graph, alpha 1, fast weights)
SYNTH_MARGO = {
    "model": "margo",
    "per_channel_graph": True,
    "alpha": 1.0,
    "weight_lr": 0.1,
    "lr_stage2": 1e-4,
}
PLUGIN_SETS: list[tuple[str, ...]] = [(), ("ckd",), ("sea",), ("ckd", "sea")]
# timing rows: (label, plug-ins, extra options); SEA's costlier and cheaper variants beside the default
TIMING_ROWS: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("margo", (), {}),
    ("margo+CKD", ("ckd",), {}),
    ("margo+SEA", ("sea",), {}),
    ("margo+SEA full-catalogue", ("sea",), {"sea_scope": "full"}),
    ("margo+SEA 50 CLUB steps", ("sea",), {"sea_club_steps": 50}),
    ("margo+SEA neg-l2", ("sea",), {"sea_distance": "neg-l2"}),
    ("margo+CKD+SEA", ("ckd", "sea"), {}),
]


def _suffix(plugins: tuple[str, ...]) -> str:
    return "".join(f"+{p.upper()}" for p in plugins)


def quality_steps(args, path: str, seed: int) -> list[C.Step]:
    meta = {"dataset": "ml-latest-small", "seed": seed, "stage1_cache": True}
    steps: list[C.Step] = []
    base = {"epochs": args.epochs, "patience": args.patience, "seed": seed, **ML_HP}
    first_ckd: str | None = None
    for plugins in PLUGIN_SETS:
        s1 = C.Step(
            f"backbone{_suffix(plugins)}",
            path,
            {**base, "model": "fusion-sum", "plugins": list(plugins)},
            "fit",
            parent=first_ckd if "ckd" in plugins and first_ckd else None,
            meta=meta,
        )
        if "ckd" in plugins and first_ckd is None:
            first_ckd = s1.key  # trains the teachers; the other CKD rows wait for the cache
        margo = C.Step(
            f"margo{_suffix(plugins)}", path, {**s1.cfg, **MARGO_KW}, "fit", s1.key, meta
        )
        steps += [s1, margo]
    return steps


# validation-only sweep around the defaults (backbone, seed 0): is a default clearly wrong?
SWEEP = [
    ("ckd", {"ckd_lambda_kd": 0.001}),
    ("ckd", {"ckd_lambda_kd": 0.1}),
    ("sea", {"sea_alpha": 0.1, "sea_beta": 0.01}),
    ("sea", {"sea_alpha": 0.001, "sea_beta": 0.001}),
]


def sweep_steps(args, path: str) -> list[C.Step]:
    seed = args.seeds[0]
    meta = {"dataset": "ml-latest-small", "seed": seed, "phase": "sweep"}
    base = {"epochs": args.epochs, "patience": args.patience, "seed": seed, **ML_HP}
    return [
        C.Step(
            f"backbone+{plugin.upper()} {kw}",
            path,
            {**base, "model": "fusion-sum", "plugins": [plugin], **kw},
            "fit",
            meta=meta,
        )
        for plugin, kw in SWEEP
    ]


def reliability_steps(args, path: str) -> list[C.Step]:
    meta = {"dataset": "synth", "seed": 0, "stage1_cache": True}
    base = {"epochs": args.rel_epochs, "patience": 10, "seed": 0}
    steps = []
    first_ckd = None
    for plugins in PLUGIN_SETS:
        st = C.Step(
            f"margo{_suffix(plugins)}",
            path,
            {**base, **SYNTH_MARGO, "plugins": list(plugins)},
            "fit",
            parent=first_ckd if "ckd" in plugins and first_ckd else None,
            meta=meta,
        )
        if "ckd" in plugins and first_ckd is None:
            first_ckd = st.key
        steps.append(st)
    return steps


# -- timing -------------------------------------------------------------------------------------
def timing(args, path: str, log) -> dict[str, Any]:
    """Epoch seconds of margo with each plug-in set, interleaved in one process (1 thread)."""
    import torch

    torch.set_num_threads(args.threads)
    from trainer.config import TrainConfig
    from trainer.data import load_dataset
    from trainer.train import fit

    data = load_dataset(path)
    cache = args.workdir / "timing-cache"  # teachers of these short runs, apart from the rows'
    per: dict[str, dict[str, list[float]]] = {}
    for rnd in range(args.timing_rounds):
        for label, plugins, extra in TIMING_ROWS:
            cfg = TrainConfig(
                **{**ML_HP, **MARGO_KW, **extra},
                plugins=plugins,
                epochs=args.timing_epochs,
                patience=10_000,
                eval_every=10_000,  # validation only at the last epoch; not timed anyway
                seed=rnd,
                threads=args.threads,
            )
            res = fit(data, cfg, progress=False, plugin_cache=cache)
            row = per.setdefault(label, {"I": [], "II": []})
            for s in res.stages:
                row[s.stage] += s.epoch_seconds[1:]  # the first epoch carries warm-up
            log(f"[timing] round {rnd} {label} {res.seconds:.1f}s")
    base = {st: statistics.median(per["margo"][st]) for st in ("I", "II")}
    out = {}
    for label, row in per.items():
        med = {st: statistics.median(v) for st, v in row.items()}
        out[label] = {
            "median_epoch_s": med,
            "relative": {st: med[st] / base[st] for st in med},
            "n_epochs": {st: len(v) for st, v in row.items()},
        }
    return out


# -- reporting ----------------------------------------------------------------------------------
def _metric_rows(steps: list[C.Step], results: dict[str, dict]) -> list[dict[str, Any]]:
    rows: dict[str, list[dict]] = {}
    for s in steps:
        if s.key in results:
            rows.setdefault(s.label, []).append(results[s.key])
    out = []
    for label, rs in rows.items():
        out.append(
            {
                "row": label,
                "seeds": [r["step"]["cfg"]["seed"] for r in rs],
                **{
                    k: C.mean_std([r["test"][k] for r in rs])
                    for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
                },
                "valid_recall@20": C.mean_std([r["valid"]["recall@20"] for r in rs]),
                "epochs": [
                    ", ".join(
                        f"{x['stage']} {x['best_epoch']}/{x['epochs_run']}" for x in r["stages"]
                    )
                    for r in rs
                ],
                "train_s": float(np.mean([sum(x["seconds"] for x in r["stages"]) for r in rs])),
            }
        )
    return out


def _auc_rows(steps: list[C.Step], results: dict[str, dict], path: str) -> list[dict[str, Any]]:
    from trainer.data import load_dataset

    data = load_dataset(path)
    mods = list(data.features)
    labels = np.stack([data.corruption[m] for m in mods], 1).astype(bool)
    runs = Path(results[next(iter(results))]["_runs_dir"]) if results else None
    out = []
    for s in steps:
        r = results.get(s.key)
        if r is None or runs is None:
            continue
        w = np.load(runs / r["weights_file"])  # softmax(W) [I, M], best-validation epoch
        per_mod = {m: C.roc_auc(labels[:, c], 1 - w[:, c]) for c, m in enumerate(mods)}
        # spread of the weights: std of the first channel's weight, entropy of w
        ent = float(-(w * np.log(np.clip(w, 1e-12, None))).sum(1).mean())
        out.append(
            {
                "row": s.label,
                "auc": C.roc_auc(labels.ravel(), (1 - w).ravel()),
                "auc_per_modality": per_mod,
                "w_std": float(w[:, 0].std()),
                "w_entropy": ent,
                "valid_recall@20": r["valid"]["recall@20"],
                "test_recall@20": r["test"]["recall@20"],
                "epochs": ", ".join(
                    f"{x['stage']} {x['best_epoch']}/{x['epochs_run']}" for x in r["stages"]
                ),
            }
        )
    return out


def _fmt(ms: tuple[float, float], n: int) -> str:
    m, s = ms
    return f"{m:.4f}" if n < 2 else f"{m:.4f} ± {s:.4f}"


def write_md(args, rep: dict[str, Any], info: dict[str, Any]) -> None:
    lines = [
        f"# Plug-in benchmark (`bench/{NAME}.py`): CKD and SEA",
        "",
        C.machine_md(info),
        "",
        "Hyper-parameters: backbone and MARGO as chosen on ml-latest-small's validation split by "
        f"bench/quality.py ({ML_HP}, margo alpha {MARGO_KW['alpha']}); plug-ins at their defaults "
        "(CKD lambda_kd 0.01, lambda_g 5, tau 0.1, 5000 generic triples, paper re-weighting, "
        "channel-drop teachers; SEA alpha_s 0.012, beta_s 0.006, tau 0.2, CLUB with 5 inner "
        "steps, Solosim, in-batch). Only a small validation-only sweep around these defaults "
        "was run (one seed, backbone; listed below): SEA's default was the best of those tried; "
        "for CKD the smallest weight (0.001) was slightly better than the default, and every "
        "CKD setting stayed below the backbone without CKD, so the rows were not re-run with "
        "it. The rows say how the default plug-ins behave, not how well a tuned one can do. "
        "Early stop on validation Recall@20, patience "
        f"{args.patience}, at most {args.epochs} epochs per stage; test metrics at the "
        "best-validation epoch. margo rows continue from the stage I of the backbone row with "
        "the same plug-ins and seed; their train time includes that stage I (CKD's teachers "
        "are trained once per dataset and listed apart). The quality and reliability runs were "
        "made before two speed-only changes to SEA (the losses reuse the forward pass's "
        "T^m(F^m) instead of computing it again; the alignment scales its 32-d side by 1/tau "
        "instead of the logit matrix): the same computation up to float rounding; the timing "
        "table is from the final code.",
        "",
        "## Quality: ml-latest-small (our importer; modalities meta + text)",
        "",
        "For orientation, MMRec's own models on `mlsmall-mmrec` (the same MovieLens users and "
        "items, but MMRec's split and features, so not directly comparable; "
        "../shared/docs/REFERENCE-NUMBERS.md): test R@20 DRAGON (MARGO's backbone) 0.2842, "
        "MGCN (patience 50) 0.2976, FREEDOM 0.2792, BPR-MF 0.2713. The papers' CKD and SEA "
        "were not run by MMRec there, so there is no reference row for the plug-ins themselves.",
        "",
    ]
    q = rep.get("quality", [])
    lines.append(
        C.md_table(
            [
                "row",
                "seeds",
                "test R@10",
                "test R@20",
                "test N@10",
                "test N@20",
                "valid R@20",
                "epochs (stage best/run)",
                "train s (mean)",
            ],
            [
                [
                    r["row"],
                    len(r["seeds"]),
                    *(_fmt(r[k], len(r["seeds"])) for k in ("recall@10", "recall@20", "ndcg@10")),
                    _fmt(r["ndcg@20"], len(r["seeds"])),
                    _fmt(r["valid_recall@20"], len(r["seeds"])),
                    "; ".join(r["epochs"]),
                    f"{r['train_s']:.0f}",
                ]
                for r in q
            ],
        )
    )
    by_row = {r["row"]: r for r in q}
    deltas = []
    for r in q:
        base = "margo" if r["row"].startswith("margo+") else "backbone"
        if r["row"] in ("backbone", "margo") or base not in by_row:
            continue
        (m, sd), (bm, bsd) = r["recall@20"], by_row[base]["recall@20"]
        (vm, _), (vbm, _) = r["valid_recall@20"], by_row[base]["valid_recall@20"]
        verdict = (
            "within one std" if abs(m - bm) <= max(sd, bsd) else ("better" if m > bm else "worse")
        )
        deltas.append(
            f"- {r['row']} vs {base}: test R@20 {m - bm:+.4f} ({verdict}); "
            f"valid R@20 {vm - vbm:+.4f}"
        )
    if deltas:
        lines += ["", "Differences (mean over seeds; std = the larger of the two rows'):", ""]
        lines += deltas
    if rep.get("sweep"):
        lines += [
            "",
            f"Validation-only sweep around the plug-in defaults (backbone, seed {args.seeds[0]}; "
            "defaults: CKD lambda_kd 0.01, SEA alpha_s 0.012 / beta_s 0.006):",
            "",
        ]
        lines += [f"- {r['row']}: valid R@20 {r['valid_recall@20']:.4f}" for r in rep["sweep"]]
    short = [r["row"] for r in q if len(r["seeds"]) < len(args.seeds)]
    if short:
        lines += [
            "",
            f"**Incomplete**: rows with fewer than {len(args.seeds)} seeds: {', '.join(short)} "
            "(stopped at the deadline; `python bench/plugins.py` resumes the rest).",
        ]
    t = rep.get("timing")
    if t:
        lines += [
            "",
            "## Time per training epoch, relative to plain margo (side by side)",
            "",
            f"One process, 1 torch thread, {args.timing_rounds} interleaved rounds of "
            f"{args.timing_epochs} epochs per stage for each row (first epoch of each run "
            "dropped); median seconds per epoch. CKD's teachers are loaded from the cache here; "
            "their one-off training time is listed below.",
            "",
            C.md_table(
                ["row", "stage I s/epoch", "x margo", "stage II s/epoch", "x margo"],
                [
                    [
                        k,
                        f"{v['median_epoch_s']['I']:.3f}",
                        f"{v['relative']['I']:.2f}",
                        f"{v['median_epoch_s']['II']:.3f}",
                        f"{v['relative']['II']:.2f}",
                    ]
                    for k, v in t.items()
                ],
            ),
        ]
    if rep.get("teachers"):
        lines += ["", "CKD teachers (ml-latest-small, trained once, cached):", ""]
        for tinfo in rep["teachers"]:
            lines.append(
                f"- {tinfo['modality']}: valid R@20 {tinfo['valid']['recall@20']:.4f}, test R@20 "
                f"{tinfo['test']['recall@20']:.4f}, {tinfo['seconds']:.0f}s"
            )
    rel = rep.get("reliability", [])
    if rel:
        lines += [
            "",
            "## Reliability: do CKD / SEA change margo's detection of corrupted modalities?",
            "",
            f"`import_synth` {SYNTH} {SYNTH_MODS}, corrupt_fraction 0.2 (a random modality per "
            f"item replaced by noise), seed 0; margo {SYNTH_MARGO} (bench/reliability.py's best "
            "margo config by AUC); one seed; early stop patience 10. AUC: ROC-AUC of 1 - w_i^m "
            "(best-validation epoch) for corrupted vs clean (item, modality) pairs, pooled; "
            "w std: std of the image weight over items; entropy: mean entropy of w_i (ln 2 = "
            "uniform).",
            "",
            C.md_table(
                [
                    "row",
                    "AUC pooled",
                    "AUC image",
                    "AUC text",
                    "w std",
                    "w entropy",
                    "valid R@20",
                    "test R@20",
                    "epochs",
                ],
                [
                    [
                        r["row"],
                        f"{r['auc']:.4f}",
                        *(f"{r['auc_per_modality'][m]:.4f}" for m in SYNTH_MODS),
                        f"{r['w_std']:.4f}",
                        f"{r['w_entropy']:.4f}",
                        f"{r['valid_recall@20']:.4f}",
                        f"{r['test_recall@20']:.4f}",
                        r["epochs"],
                    ]
                    for r in rel
                ],
            ),
        ]
    C.atomic_write_text(args.results / f"{NAME}.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    C.add_common_args(p)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=300, help="max epochs per stage (quality)")
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--rel-epochs", type=int, default=100, help="max epochs per stage (synth)")
    p.add_argument("--timing-rounds", type=int, default=2)
    p.add_argument("--timing-epochs", type=int, default=3)
    p.add_argument(
        "--parts",
        nargs="+",
        default=["reliability", "sweep", "quality", "timing"],
        help="what to run (default all)",
    )
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--ml-latest-small", type=Path, default=C.ML_LATEST_SMALL)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.rel_epochs = args.seeds[:1], 3, 3
        args.timing_rounds, args.timing_epochs = 1, 2
    info = C.machine_info(args.threads)
    runs_dir = args.workdir / "runs"
    log = C.make_logger(args.workdir / f"{NAME}.log")
    t0 = time.perf_counter()
    from trainer.data import import_movielens, import_synth

    ml = args.workdir / "data" / "ml-latest-small"
    if not (ml / "stats.json").is_file():
        import_movielens(args.ml_latest_small, ml, overwrite=True, progress=False)
    synth = args.workdir / "data" / "synth-corrupt"
    if not (synth / "stats.json").is_file():
        import_synth(
            synth,
            **SYNTH,
            modalities=SYNTH_MODS,
            corrupt_fraction=0.2,
            seed=0,
            overwrite=True,
            progress=False,
        )

    def run(steps: list[C.Step]) -> dict[str, dict]:
        res = C.run_or_load(steps, args, runs_dir, log)
        for r in res.values():
            r["_runs_dir"] = str(runs_dir)
        return res

    rep: dict[str, Any] = {}
    json_path = args.results / f"{NAME}.json"
    if "reliability" in args.parts:
        steps = reliability_steps(args, str(synth))
        rep["reliability"] = _auc_rows(steps, run(steps), str(synth))
    if "sweep" in args.parts:
        steps = sweep_steps(args, str(ml))
        res = run(steps)
        rep["sweep"] = [
            {"row": s.label, "valid_recall@20": res[s.key]["valid"]["recall@20"]}
            for s in steps
            if s.key in res
        ]
    if "quality" in args.parts:
        steps = []
        for seed in args.seeds:  # seed by seed, so that a cut-off run still has whole seeds
            steps += quality_steps(args, str(ml), seed)
        qres = run(steps)
        rep["quality"] = _metric_rows(steps, qres)
        if rep.get("sweep"):  # the defaults on the sweep's seed, for comparison
            rep["sweep"] = [
                {
                    "row": f"{s.label} ({'default' if '+' in s.label else 'no plug-in'})",
                    "valid_recall@20": qres[s.key]["valid"]["recall@20"],
                }
                for s in steps
                if s.key in qres
                and s.cfg["seed"] == args.seeds[0]
                and s.label in ("backbone", "backbone+CKD", "backbone+SEA")
            ] + rep["sweep"]
    from trainer.data import load_dataset

    ml_name = load_dataset(ml).name
    teachers = []
    for f in sorted((runs_dir / "plugin-cache").glob("ckd-teacher-*.npz")):
        with np.load(f) as z:
            import json

            tinfo = json.loads(str(z["info"]))
        seen = {(t["modality"], t["mode"]) for t in teachers}
        if tinfo.get("dataset") == ml_name and (tinfo["modality"], tinfo.get("mode")) not in seen:
            teachers.append({"file": f.name, "mode": tinfo.get("mode"), **tinfo})
    rep["teachers"] = teachers
    if "timing" in args.parts and not args.report_only:
        rep["timing"] = timing(args, str(ml), log)
    elif json_path.is_file():  # keep the last measured timing table
        import json

        rep["timing"] = json.loads(json_path.read_text()).get("timing")
    C.atomic_write_json(
        json_path,
        {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, **rep},
    )
    write_md(args, rep, info)
    log(f"[bench] wrote {json_path} and .md in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
