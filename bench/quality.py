"""Quality benchmark: test Recall/NDCG@10/20 of every model and MARGO ablation, 3 seeds.

Datasets
  mlsmall-mmrec    ../shared/data/mlsmall-mmrec (MMRec layout; `image` slot = genres + year,
                   `text` = MiniLM title); MMRec's reference numbers are on exactly this split
  ml-latest-small  ../shared/data/ml-latest-small through our importer (import_movielens
                   defaults: rating >= 4, 5-core, seed 2026; modalities text + meta), cached
                   under WORKDIR/data (a different 8:1:1 split of the same ratings)

Protocol
  1. sweep (seed = first seed, first dataset, validation Recall@20 only): stage-I reg_weight
     {1e-3, 1e-2}; margo alpha {0.01, 0.1, 1} x weight_lr {stage lr, 1e-2} x stage-II lr
     {lr, 1e-4 (the paper's)}; fusion-learned weight_lr {stage lr, 1e-2} x stage-II lr {lr, 1e-4}; bpr reg {1e-3, 1e-2, 1e-1, 1}; lightgcn reg {1e-3, 1e-2, 1e-1}.
     The chosen values are used for every seed and both datasets.
  2. every row x seed. fusion-sum is stage I (the paper's "w/o weight"); fusion-learned,
     margo and margo --no-stopgrad continue from that same best stage-I state (the trainer's
     own stage-I cache, ``fit(stage1_cache=...)``), so one seed trains stage I once.
     Single-modality and ID-channel rows have their own stage I. Training seconds of a
     stage-II row include its stage I.

Every run is a JSON in WORKDIR/runs; an interrupted benchmark resumes where it stopped.

    .venv/bin/python bench/quality.py --quick          # smoke check, ~2 min
    .venv/bin/python bench/quality.py                  # full (hours of CPU; --jobs 2)
    .venv/bin/python bench/quality.py --report-only    # tables and plots from finished runs
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

NAME = "quality"
MAX_EPOCHS = 300
PATIENCE = 20
# MMRec's own figures on mlsmall-mmrec (REFERENCE-NUMBERS.md): (R@10, R@20, N@10, N@20, patience)
REFERENCE = {
    "MostPop (no training)": (None, 0.1594, None, None, "–"),
    "LATTICE": (0.1661, 0.2531, 0.1455, 0.1702, 20),
    "LGMRec": (None, 0.2482, None, 0.1779, 20),
    "VBPR": (None, 0.2667, None, 0.1813, 20),
    "LightGCN": (None, 0.2684, None, 0.1826, 20),
    "BPR-MF (reg 1.0)": (None, 0.2713, None, 0.1831, 20),
    "FREEDOM": (None, 0.2792, None, 0.1929, 20),
    "DRAGON (MARGO's backbone)": (None, 0.2842, None, 0.1938, 20),
    "SMORE": (0.1997, 0.2910, 0.1757, 0.2017, 20),
    "MGCN": (0.1440, 0.2129, 0.1279, 0.1474, 20),
    "MGCN (patience 50)": (0.1918, 0.2976, 0.1678, 0.2012, 50),
}
REF_OF_ROW = {
    "bpr": "BPR-MF (reg 1.0)",
    "lightgcn": "LightGCN",
    "vbpr": "VBPR",
    "fusion-sum": "DRAGON (MARGO's backbone)",
}
DEFAULT_HP = {
    "reg": 1e-3,
    "alpha": 0.1,
    "wlr": None,
    "lr2": None,
    "fl_wlr": None,
    "fl_lr2": None,
    "bpr_reg": 1e-3,
    "lgcn_reg": 1e-3,
    "vbpr_reg": 1e-3,
}
WEIGHTED_ROWS = ("fusion-learned", "margo", "margo-no-stopgrad", "margo-no-two-stage", "margo+id")


# -- datasets -------------------------------------------------------------------------------------
def dataset_paths(args: argparse.Namespace) -> dict[str, tuple[str, list[str]]]:
    """name -> (bundle path, modality names), importing ml-latest-small once into the workdir."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name in args.datasets:
        if name == "mlsmall-mmrec":
            out[name] = (str(args.mlsmall_mmrec), ["image", "text"])
        elif name == "ml-latest-small":
            path = args.workdir / "data" / "ml-latest-small"
            if not (path / "stats.json").is_file():
                from trainer.data import import_movielens

                print(
                    f"[bench] importing {args.ml_latest_small} -> {path} (MiniLM titles, ~1-2 min)",
                    flush=True,
                )
                import_movielens(args.ml_latest_small, path, overwrite=True, progress=False)
            out[name] = (str(path), ["meta", "text"])
        else:
            raise SystemExit(f"--datasets: unknown dataset {name!r}")
    return out


# -- steps ------------------------------------------------------------------------------------------
def base_cfg(args: argparse.Namespace, seed: int, **kw: Any) -> dict[str, Any]:
    return {"epochs": args.epochs, "patience": args.patience, "seed": seed, **kw}


CORE = ("fusion-sum", "margo", "fusion-learned", "bpr", "lightgcn", "vbpr")


def rows_for(
    args, ds: str, path: str, mods: list[str], seed: int, hp: dict[str, Any], part: str = "all"
) -> list[C.Step]:
    """Steps of one (dataset, seed), most important first; ``part``: core rows, ablation rows
    (and their stage-I parents) or all; filtered by --models."""
    meta = {"dataset": ds, "seed": seed}
    cfg = lambda **kw: base_cfg(args, seed, **kw)  # noqa: E731
    margo_kw = {
        "model": "margo",
        "alpha": hp["alpha"],
        "weight_lr": hp["wlr"],
        "lr_stage2": hp.get("lr2"),
    }
    s1 = C.Step(
        "fusion-sum", path, cfg(model="fusion-sum", reg_weight=hp["reg"]), "stage1", meta=meta
    )
    steps = [
        s1,
        C.Step("margo", path, {**s1.cfg, **margo_kw}, "branch", s1.key, meta),
        C.Step(
            "fusion-learned",
            path,
            {
                **s1.cfg,
                "model": "fusion-learned",
                "weight_lr": hp["fl_wlr"],
                "lr_stage2": hp.get("fl_lr2"),
            },
            "branch",
            s1.key,
            meta,
        ),
        C.Step("bpr", path, cfg(model="bpr", reg_weight=hp["bpr_reg"]), meta=meta),
        C.Step("lightgcn", path, cfg(model="lightgcn", reg_weight=hp["lgcn_reg"]), meta=meta),
        C.Step("vbpr", path, cfg(model="vbpr", reg_weight=hp["vbpr_reg"]), meta=meta),
        C.Step(
            "margo-no-stopgrad",
            path,
            {**s1.cfg, **margo_kw, "stopgrad": False},
            "branch",
            s1.key,
            meta,
        ),
        C.Step(
            "margo-no-two-stage",
            path,
            {**s1.cfg, **margo_kw, "model": "margo", "two_stage": False},
            meta=meta,
        ),
    ]
    for m in mods:
        s1m = C.Step(f"fusion-sum-{m}", path, {**s1.cfg, "modalities": [m]}, "stage1", meta=meta)
        steps += [s1m, C.Step(f"margo-{m}", path, {**s1m.cfg, **margo_kw}, "branch", s1m.key, meta)]
    s1id = C.Step("fusion-sum+id", path, {**s1.cfg, "id_channel": True}, "stage1", meta=meta)
    steps += [s1id, C.Step("margo+id", path, {**s1id.cfg, **margo_kw}, "branch", s1id.key, meta)]
    if part == "core":
        steps = [s for s in steps if s.label in CORE]
    elif part == "ablation":
        steps = [
            s
            for s in steps
            if s.label not in CORE or any(x.parent == s.key and x.label not in CORE for x in steps)
        ]
    return [s for s in steps if _wanted(args, s, steps)]


def _wanted(args, step: C.Step, steps: list[C.Step]) -> bool:
    if not args.models:
        return True
    wanted = {_row_group(m) for m in args.models}
    if _row_group(step.label) in wanted:
        return True
    # a stage-I parent is needed by a wanted branch
    return any(s.parent == step.key and _row_group(s.label) in wanted for s in steps)


def _row_group(label: str) -> str:
    if label.startswith("margo-") and label not in ("margo-no-stopgrad", "margo-no-two-stage"):
        return "margo-single"  # margo-text, margo-image, ...
    return label


def sweep(args, ds: str, path: str, mods: list[str], runs_dir: Path, log) -> dict[str, Any]:
    """Phase 1 (first seed, validation Recall@20 only): pick the hyper-parameters."""
    seed = args.seeds[0]
    meta = {"dataset": ds, "seed": seed, "phase": "sweep"}
    cfg = lambda **kw: base_cfg(args, seed, **kw)  # noqa: E731
    v = lambda r: r["valid"].get("recall@20", -1.0)  # noqa: E731

    def run(steps):
        return C.run_or_load(steps, args, runs_dir, log)

    grid: dict[str, list] = {
        "stage1_reg": [],
        "bpr_reg": [],
        "lgcn_reg": [],
        "margo": [],
        "fl_wlr": [],
    }
    # 1a: stage-I reg and the ID baselines' reg; filler: the other stage-I runs of seed 0
    s1s = {
        r: C.Step("fusion-sum", path, cfg(model="fusion-sum", reg_weight=r), "stage1", meta=meta)
        for r in (1e-3, 1e-2)
    }
    bprs = {
        r: C.Step("bpr", path, cfg(model="bpr", reg_weight=r), meta=meta)
        for r in (1e-3, 1e-2, 1e-1, 1.0)
    }
    lgcns = {
        r: C.Step("lightgcn", path, cfg(model="lightgcn", reg_weight=r), meta=meta)
        for r in (1e-3, 1e-2, 1e-1)
    }
    res = run([*s1s.values(), *bprs.values(), *lgcns.values()])
    hp = dict(DEFAULT_HP)
    for name, steps, key in (
        ("stage1_reg", s1s, "reg"),
        ("bpr_reg", bprs, "bpr_reg"),
        ("lgcn_reg", lgcns, "lgcn_reg"),
    ):
        scored = [(r, v(res[s.key])) for r, s in steps.items() if s.key in res]
        grid[name] = scored
        if scored:
            hp[key] = max(scored, key=lambda x: x[1])[0]
    log(
        f"[bench] sweep 1a: {grid} -> reg {hp['reg']}, bpr {hp['bpr_reg']}, lightgcn {hp['lgcn_reg']}"
    )
    # 1b: stage II of margo / fusion-learned from the chosen stage I (+ filler: seed-0 stage Is)
    s1 = s1s[hp["reg"]]
    margos = {
        (a, w, l2): C.Step(
            "margo",
            path,
            {**s1.cfg, "model": "margo", "alpha": a, "weight_lr": w, "lr_stage2": l2},
            "branch",
            s1.key,
            meta,
        )
        for l2 in (None, 1e-4)
        for a in (0.01, 0.1, 1.0)
        for w in (None, 1e-2)
    }
    fls = {
        (w, l2): C.Step(
            "fusion-learned",
            path,
            {**s1.cfg, "model": "fusion-learned", "weight_lr": w, "lr_stage2": l2},
            "branch",
            s1.key,
            meta,
        )
        for l2 in (None, 1e-4)
        for w in (None, 1e-2)
    }
    filler = [
        s
        for s in rows_for(args, ds, path, mods, seed, hp)
        if s.kind == "stage1" and s.key != s1.key
    ]
    res = run([*margos.values(), *fls.values(), *filler])
    grid["margo"] = [(*k, v(res[s.key])) for k, s in margos.items() if s.key in res]
    grid["fl_wlr"] = [(*k, v(res[s.key])) for k, s in fls.items() if s.key in res]
    if grid["margo"]:
        hp["alpha"], hp["wlr"], hp["lr2"], _ = max(grid["margo"], key=lambda x: x[-1])
    if grid["fl_wlr"]:
        hp["fl_wlr"], hp["fl_lr2"], _ = max(grid["fl_wlr"], key=lambda x: x[-1])
    log(f"[bench] sweep 1b: margo {grid['margo']} fusion-learned {grid['fl_wlr']} -> {hp}")
    return {"dataset": ds, "seed": seed, "grid": grid, "chosen": hp}


# -- report -----------------------------------------------------------------------------------------
ROW_ORDER = [
    "bpr",
    "lightgcn",
    "vbpr",
    "fusion-sum",
    "fusion-learned",
    "margo",
    "margo-no-two-stage",
    "margo-no-stopgrad",
]


def summarise(pairs: list[tuple[C.Step, dict]], datasets: dict, seeds: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ds, (_, mods) in datasets.items():
        rows: dict[str, list[dict]] = {}
        for st, r in pairs:
            if (
                st.meta.get("dataset") != ds
                or st.meta.get("seed") not in seeds
                or st.meta.get("phase")
            ):
                continue
            rows.setdefault(st.label, []).append({**r, "meta": st.meta})
        order = (
            ROW_ORDER
            + [f"margo-{m}" for m in mods]
            + [f"fusion-sum-{m}" for m in mods]
            + ["fusion-sum+id", "margo+id"]
        )
        table = {}
        for label in [x for x in order if x in rows] + sorted(set(rows) - set(order)):
            rs = sorted(rows[label], key=lambda r: r["meta"]["seed"])
            met = lambda k, rs=rs: [r["test"][k] for r in rs]  # noqa: E731
            table[label] = {
                "seeds": [r["meta"]["seed"] for r in rs],
                **{
                    f"test_{k}": mean_std_d(met(k))
                    for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
                },
                "valid_recall@20": mean_std_d([r["valid"]["recall@20"] for r in rs]),
                "stages": [
                    [(s["stage"], s["best_epoch"], s["epochs_run"]) for s in r["stages"]]
                    for r in rs
                ],
                "seconds": mean_std_d([r["seconds"] for r in rs]),
                "own_seconds_total": round(sum(r["own_seconds"] for r in rs), 1),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                "cfg": {k: v for k, v in rs[0]["step"]["cfg"].items() if k != "seed"},
                "runs": [r["key"] for r in rs],
            }
        out[ds] = table
    return out


def mean_std_d(values: list[float]) -> dict[str, Any]:
    m, s = C.mean_std(values)
    return {"mean": m, "std": s, "n": len(values), "values": values}


def _ms(d: dict) -> str:
    if d["n"] == 0 or math.isnan(d["mean"]):
        return "–"
    return f"{d['mean']:.4f} ± {d['std']:.4f}" if d["n"] > 1 else f"{d['mean']:.4f}"


def _epochs(stages: list[list]) -> str:
    """'I 101/121, II 12/32' from the first seed, '(+n seeds: best I ...)' for the rest."""
    per_stage: dict[str, list[str]] = {}
    for run in stages:
        for st, best, ran in run:
            per_stage.setdefault(st, []).append(f"{best}/{ran}")
    return "; ".join(f"{st} {', '.join(v)}" for st, v in per_stage.items())


def write_report(args, datasets, summary, sweep_info, pairs, all_runs, t_wall, info) -> None:
    md = ["# Quality benchmark (`bench/quality.py`)\n", C.machine_md(info), ""]
    md.append(
        f"Protocol: full ranking over all items with training items masked (MMRec protocol); Adam lr 1e-3, "
        f"batch 2048, d 64; early stop on validation Recall@20 with **patience {args.patience}** validation checks "
        f"(one per epoch), at most **{args.epochs} epochs per stage**; test metrics at the best-validation epoch of "
        f"the last stage. Seeds {args.seeds} (the seed changes initialisation and sampling; the split is fixed). "
        f"Mean ± sample std over seeds. fusion-learned / margo / margo-no-stopgrad continue (stage II) from the very "
        f"stage-I checkpoint reported as fusion-sum for the same seed; their time includes that stage I. "
        f"Epochs column: per stage `best/run` for each seed.\n"
    )
    if args.quick:
        md.append(
            f"**QUICK SMOKE RUN** ({args.epochs} epochs per stage): numbers are not meaningful.\n"
        )
    if sweep_info:
        md.append("## Hyper-parameter sweep (validation Recall@20 only, 1 seed)\n")
        for s in sweep_info:
            g = s["grid"]
            md.append(f"Dataset {s['dataset']}, seed {s['seed']}:\n")
            md.append(
                "- stage-I (fusion-sum) reg_weight: "
                + ", ".join(f"{r:g} → {x:.4f}" for r, x in g["stage1_reg"])
            )
            md.append("- bpr reg_weight: " + ", ".join(f"{r:g} → {x:.4f}" for r, x in g["bpr_reg"]))
            md.append(
                "- lightgcn reg_weight: " + ", ".join(f"{r:g} → {x:.4f}" for r, x in g["lgcn_reg"])
            )
            md.append(
                "- margo (alpha, weight_lr, stage-II lr): "
                + ", ".join(
                    f"({a:g}, {w if w else 'lr'}, {l2 if l2 else 'lr'}) → {x:.4f}"
                    for a, w, l2, x in g["margo"]
                )
            )
            md.append(
                "- fusion-learned (weight_lr, stage-II lr): "
                + ", ".join(
                    f"({w if w else 'lr'}, {l2 if l2 else 'lr'}) → {x:.4f}"
                    for w, l2, x in g["fl_wlr"]
                )
            )
            md.append(
                f"- **chosen**: `{s['chosen']}` (used for all seeds, both datasets; the ablation and "
                f"ID-channel rows use margo's alpha/weight_lr/stage-II lr; vbpr keeps reg 1e-3)\n"
            )
    for ds, table in summary.items():
        md.append(f"## {ds}\n")
        hdr = [
            "model",
            "seeds",
            "test R@10",
            "test R@20",
            "test N@10",
            "test N@20",
            "valid R@20",
            "epochs (stage best/run)",
            "train s (mean)",
        ]
        if ds == "mlsmall-mmrec":
            hdr.append("MMRec ref R@20 / N@20")
        rows = []
        for label, t in table.items():
            row = [
                label,
                len(t["seeds"]),
                _ms(t["test_recall@10"]),
                _ms(t["test_recall@20"]),
                _ms(t["test_ndcg@10"]),
                _ms(t["test_ndcg@20"]),
                _ms(t["valid_recall@20"]),
                _epochs(t["stages"]),
                f"{t['seconds']['mean']:.0f}",
            ]
            if ds == "mlsmall-mmrec":
                ref = REFERENCE.get(REF_OF_ROW.get(label, ""))
                row.append(f"{REF_OF_ROW[label]}: {ref[1]:.4f} / {ref[3]:.4f}" if ref else "")
            rows.append(row)
        md.append(C.md_table(hdr, rows) + "\n")
        want = len(args.seeds if ds == next(iter(datasets)) else (args.seeds_second or args.seeds))
        short = [f"{k} ({len(t['seeds'])})" for k, t in table.items() if len(t["seeds"]) < want]
        if short:
            md.append(
                f"**Incomplete** (stopped at the session's CPU budget on the shared 2-core machine; runs are "
                f"resumable): rows with fewer than {want} seeds: {', '.join(short)}.\n"
            )
        if not table:
            md.append(
                "**Not run** in this session (CPU budget); `bench/quality.py --datasets "
                + ds
                + "` resumes it.\n"
            )
        if table:
            md.append(_goal_lines(ds, table))
        if ds == "mlsmall-mmrec":
            md.append(
                "MMRec reference runs on exactly this split (REFERENCE-NUMBERS.md: seed 999, one setting each, "
                "same lr/batch/d, not re-run here):\n"
            )
            md.append(
                C.md_table(
                    ["model (MMRec)", "patience", "R@10", "R@20", "N@10", "N@20"],
                    [[k, v[4], v[0], v[1], v[2], v[3]] for k, v in REFERENCE.items()],
                )
                + "\n"
            )
        else:
            md.append(
                "No reference numbers exist for this split (our importer's 8:1:1 split differs from the "
                "MMRec bundle's, and its item order too), so compare rows with each other only.\n"
            )
        if (args.results / f"{NAME}_weights_{ds}.png").is_file() and table:
            md.append(f"![learned item weights]({NAME}_weights_{ds}.png)\n")
    md.append("## Notes\n")
    md.append(_slow_starter_note(pairs))
    md.append(_seed_gap_note(summary))
    md.append(_selection_gap_note(summary))
    md.append(
        "- Weights histograms: `fusion-sum` has no weights (every channel weighs 1, i.e. constant), so it has no "
        "histogram. For two channels w^text = 1 - w^other, so one histogram per model says everything.\n"
        "- Single-modality rows (`margo-<m>`, the paper's MARGO_v / MARGO_t) have one channel: softmax over one "
        "logit is 1 and L_cal is 0, so their stage II is plain fine-tuning with a fresh Adam.\n"
        "- `fusion-sum+id` / `margo+id`: the ID-channel extension (ALGORITHMS.md 1.9), reported as its own rows, "
        "not instead of the paper-faithful margo.\n"
        "- Stage II of branched rows starts from the best stage-I state through the trainer's own stage-I cache "
        "(`fit(stage1_cache=...)`), with the stage-II seeds of a full `margo train` run: what `margo train` "
        "computes. Weighted models fuse with M * softmax(W) (trainer default `scale_weights=True`).\n"
    )
    n_runs = len(all_runs)
    cpu_s = sum(r["own_seconds"] for r in all_runs.values())
    md.append(
        f"- Compute: {n_runs} training runs (sweep included), {cpu_s / 60:.1f} process-minutes of training; "
        f"wall time of this invocation {t_wall / 60:.1f} min{' (report only)' if args.report_only else ''} with --jobs {args.jobs}. Per-run seconds were "
        f"measured with 1 torch thread while other work shared the 2 cores, so they are upper bounds.\n"
    )
    md.append(
        "\nTraining plug-ins (CKD, SEA): their quality rows are in [plugins.md](plugins.md) (`bench/plugins.py`)."
    )
    C.atomic_write_text(args.results / f"{NAME}.md", "\n".join(md))


def _goal_lines(ds: str, table: dict) -> str:
    r = lambda k: table.get(k, {}).get("test_recall@20", {"mean": float("nan"), "std": 0, "n": 0})  # noqa: E731
    m, fl, fs = r("margo"), r("fusion-learned"), r("fusion-sum")
    lines = ["Goals (test R@20, mean ± std):\n"]
    if ds == "mlsmall-mmrec":
        d = REFERENCE["DRAGON (MARGO's backbone)"][1]
        g = REFERENCE["MGCN (patience 50)"][1]
        lines.append(
            f"- margo {_ms(m)} vs DRAGON (MMRec) {d:.4f}: **{'holds' if m['mean'] > d else 'does not hold'}**; "
            f"vs best anchor MGCN (patience 50) {g:.4f}: {'above' if m['mean'] > g else 'below'}."
        )
        if "margo+id" in table:
            mi = r("margo+id")
            lines.append(
                f"- extension margo+id {_ms(mi)} vs DRAGON {d:.4f}: {'above' if mi['mean'] > d else 'below'}; "
                f"vs MGCN {g:.4f}: {'above' if mi['mean'] > g else 'below'}."
            )
    ok1 = m["mean"] > fl["mean"]
    ok2 = fl["mean"] > fs["mean"]

    def sig(a, b):
        if min(a["n"], b["n"]) < 2:
            return "one seed, no std"
        return (
            "beyond" if abs(a["mean"] - b["mean"]) > (a["std"] + b["std"]) else "within"
        ) + " one std of each other"

    lines.append(
        f"- margo > fusion-learned: {'holds' if ok1 else 'does not hold'} ({_ms(m)} vs {_ms(fl)}; "
        f"{sig(m, fl)})"
    )
    lines.append(
        f"- fusion-learned > fusion-sum: {'holds' if ok2 else 'does not hold'} ({_ms(fl)} vs {_ms(fs)}; "
        f"{sig(fl, fs)})\n"
    )
    return "\n".join(lines) + "\n"


def _slow_starter_note(pairs: list[tuple[C.Step, dict]]) -> str:
    """Early-stop check: stage-I runs that peaked early, and the patience-50 control run."""
    early = []
    for st, r in pairs:
        for s in r["stages"]:
            if s["stage"] == "I" and s["best_epoch"] <= 25 and not st.meta.get("phase"):
                early.append(
                    f"{st.label} ({st.meta.get('dataset')}, seed {st.meta.get('seed')}, best epoch {s['best_epoch']})"
                )
    out = "- Early stop / slow starters: "
    if early:
        out += (
            "stage-I runs whose best epoch is <= 25 (candidates for a cut slow start): "
            + "; ".join(sorted(set(early))[:12])
            + ". "
        )
    else:
        out += "no stage-I run peaked in its first 25 epochs. "
    by_key = {st.key: (st, r) for st, r in pairs}
    for st, c in pairs:
        if st.meta.get("phase") != "patience-check":
            continue
        twin = dict(st.cfg, patience=PATIENCE)
        p = next((r for s2, r in by_key.values() if s2.kind == "stage1" and s2.cfg == twin), None)
        s_c = c["stages"][0]
        out += (
            f"Control: {st.label} ({st.meta.get('dataset')}, seed {st.meta.get('seed')}) with patience "
            f"{st.cfg['patience']}: best epoch {s_c['best_epoch']} of {s_c['epochs_run']}, valid R@20 "
            f"{c['valid']['recall@20']:.4f}, test R@20 {c['test']['recall@20']:.4f}"
        )
        if p:
            s_p = p["stages"][0]
            out += (
                f" vs patience {PATIENCE}: best epoch {s_p['best_epoch']} of {s_p['epochs_run']}, valid "
                f"{p['valid']['recall@20']:.4f}, test {p['test']['recall@20']:.4f}"
            )
        out += ". "
    return (
        out
        + "Validation curves of every run are in the per-run JSONs under WORKDIR/runs (`history`).\n"
    )


def _seed_gap_note(summary: dict) -> str:
    """Seeds of one row whose validation Recall@20 is far below the row's best seed: a run
    stopped before a late climb (a slow start cut by patience) looks like this."""
    flags = []
    for ds, table in summary.items():
        for label, t in table.items():
            v = t["valid_recall@20"]["values"]
            if len(v) > 1 and max(v) - min(v) > 0.02:
                worst = int(np.argmin(v))
                flags.append(
                    f"{label} on {ds}, seed {t['seeds'][worst]}: valid R@20 {min(v):.4f} vs {max(v):.4f} "
                    f"(epochs {t['stages'][worst]})"
                )
    if not flags:
        return "- Seed-to-seed validation Recall@20 spread is below 0.02 for every row (no sign of a cut slow start).\n"
    return (
        "- Possible slow starts cut by patience 20 (validation R@20 more than 0.02 below the row's best seed): "
        + "; ".join(flags)
        + ".\n"
    )


def _selection_gap_note(summary: dict) -> str:
    """Stage II is early-stopped on validation Recall@20 after stage I was: its gain on the
    validation split against its own stage I, beside its gain on the test split."""
    parts = []
    for ds, table in summary.items():
        base = table.get("fusion-sum")
        if not base:
            continue
        for label in ("fusion-learned", "margo", "margo-no-stopgrad"):
            t = table.get(label)
            if not t:
                continue
            dv = t["valid_recall@20"]["mean"] - base["valid_recall@20"]["mean"]
            dt = t["test_recall@20"]["mean"] - base["test_recall@20"]["mean"]
            parts.append(f"{label} on {ds}: valid {dv:+.4f}, test {dt:+.4f}")
    if not parts:
        return ""
    return (
        "- Selection gap: stage II vs its own stage I (fusion-sum), mean Recall@20 change on the "
        "validation split it is selected on and on the test split: "
        + "; ".join(parts)
        + ". Stage II is a second round of early stopping on the same validation split, so "
        "part of its validation gain is selection noise (the stage-I state it starts from is "
        "already the best of ~100 validation checks); on these data the test split does not "
        "confirm it.\n"
    )


def plot_weights(args, datasets: dict, pairs: list[tuple[C.Step, dict]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    args.results.mkdir(parents=True, exist_ok=True)
    for ds, (_, _mods) in datasets.items():
        runs = {}
        for st, r in pairs:
            if (
                st.meta.get("dataset") == ds
                and st.meta.get("seed") == args.seeds[0]
                and not st.meta.get("phase")
                and st.label in WEIGHTED_ROWS
                and r.get("weights_file")
            ):
                runs[st.label] = r
        labels = [x for x in WEIGHTED_ROWS if x in runs]
        if not labels:
            continue
        fig, axes = plt.subplots(1, len(labels), figsize=(3.6 * len(labels), 3.0), squeeze=False)
        for ax, label in zip(axes[0], labels, strict=True):
            r = runs[label]
            w = np.load(args.workdir / "runs" / r["weights_file"])
            chans = r["channels"]
            show = [c for c in chans if c != "image" and c != "meta"] if len(chans) == 2 else chans
            for c in show:
                ax.hist(w[:, chans.index(c)], bins=40, range=(0, 1), alpha=0.6, label=f"w^{c}")
            ax.set_title(f"{label} (seed {args.seeds[0]})", fontsize=9)
            ax.set_xlabel("item weight")
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("items")
        fig.suptitle(
            f"{ds}: learned per-item modality weights (fusion-sum: all weights 1, not shown)",
            fontsize=9,
        )
        fig.tight_layout()
        out = args.results / f"{NAME}_weights_{ds}.png"
        tmp = out.with_name(f".{out.name}.tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(out)
        files.append(str(out))
    return files


# -- main ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    C.add_common_args(p)
    p.add_argument(
        "--datasets",
        nargs="+",
        default=["mlsmall-mmrec", "ml-latest-small"],
        help="mlsmall-mmrec and/or ml-latest-small (default both)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="rows to run: bpr lightgcn vbpr fusion-sum fusion-learned margo margo-no-two-stage "
        "margo-no-stopgrad margo-single margo+id fusion-sum+id (default all)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument(
        "--seeds-second",
        nargs="+",
        type=int,
        default=None,
        help="seeds for datasets after the first (default: --seeds)",
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
        "--no-sweep", action="store_true", help="skip the validation sweep, use trainer defaults"
    )
    p.add_argument(
        "--no-patience-check", action="store_true", help="skip the patience-50 control run"
    )
    p.add_argument(
        "--report-only", action="store_true", help="only rebuild tables/plots from finished runs"
    )
    p.add_argument(
        "--mlsmall-mmrec", type=Path, default=C.MLSMALL_MMREC, help="MMRec-layout bundle"
    )
    p.add_argument(
        "--ml-latest-small", type=Path, default=C.ML_LATEST_SMALL, help="raw ml-latest-small folder"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.no_sweep, args.no_patience_check = (
            args.seeds[:1],
            3,
            True,
            True,
        )
        args.seeds_second = args.seeds
    seeds2 = args.seeds_second or args.seeds
    info = C.machine_info(args.threads)
    runs_dir = args.workdir / "runs"
    log = C.make_logger(args.workdir / f"{NAME}.log")
    t0 = time.perf_counter()
    datasets = dataset_paths(args)
    state_file = args.workdir / f"{NAME}_sweep.json"
    sweep_info: list[dict] = []
    hp = dict(DEFAULT_HP)
    first = next(iter(datasets))
    if not args.no_sweep:
        if args.report_only and state_file.is_file():
            import json

            sweep_info = [json.loads(state_file.read_text())]
        elif not args.report_only:
            path, mods = datasets[first]
            sweep_info = [sweep(args, first, path, mods, runs_dir, log)]
            C.atomic_write_json(state_file, sweep_info[0])
        if sweep_info:
            hp = sweep_info[0]["chosen"]
    # phase 2: every row x seed, in priority order so that a run cut short by the clock still
    # covers every dataset: first seed of dataset 1 (all rows), its other seeds (core rows),
    # first seed of dataset 2, then ablation rows of the other seeds, dataset by dataset
    order: list[tuple[str, int, str]] = []
    for j, ds in enumerate(datasets):
        sd = args.seeds if j == 0 else seeds2
        order += [(ds, sd[0], "all")] + [(ds, s, "core") for s in sd[1:]]
    for j, ds in enumerate(datasets):
        sd = args.seeds if j == 0 else seeds2
        order += [(ds, s, "ablation") for s in sd[1:]]
    steps = []
    for ds, seed, part in order:
        path, mods = datasets[ds]
        steps += rows_for(args, ds, path, mods, seed, hp, part)
    if not args.no_patience_check:
        path, mods = datasets[first]
        ctrl = C.Step(
            "fusion-sum",
            path,
            base_cfg(args, args.seeds[0], model="fusion-sum", reg_weight=hp["reg"], patience=50),
            "fit",
            meta={"dataset": first, "seed": args.seeds[0], "phase": "patience-check"},
        )
        steps.append(ctrl)
    if not args.report_only:
        log(f"[bench] {NAME}: {len(steps)} runs planned, hyper-parameters {hp}")
    results = C.run_or_load(steps, args, runs_dir, log)
    # every run this invocation used (sweep runs included) for the compute total
    all_runs = dict(results)
    for f in runs_dir.glob("*.json"):
        if f.stem not in all_runs and sweep_info:
            r = C.load_result(runs_dir, f.stem)
            if (
                r
                and r["step"]["meta"].get("phase") == "sweep"
                and r["step"]["meta"].get("dataset") in datasets
            ):
                all_runs[f.stem] = r
    pairs = list(
        {s.key: (s, results[s.key]) for s in reversed(steps) if s.key in results}.values()
    )[::-1]
    summary = {}
    for j, ds in enumerate(datasets):
        summary.update(summarise(pairs, {ds: datasets[ds]}, args.seeds if j == 0 else seeds2))
    pngs = plot_weights(args, datasets, pairs)
    t_wall = time.perf_counter() - t0
    C.atomic_write_json(
        args.results / f"{NAME}.json",
        {
            "machine": info,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "hyper_parameters": hp,
            "sweep": sweep_info,
            "summary": summary,
            "reference_mmrec": REFERENCE,
            "plots": pngs,
            "wall_seconds": round(t_wall, 1),
            "train_seconds_total": round(sum(r["own_seconds"] for r in all_runs.values()), 1),
        },
    )
    write_report(args, datasets, summary, sweep_info, pairs, all_runs, t_wall, info)
    log(f"[bench] wrote {args.results / NAME}.json/.md in {t_wall:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
