"""Plug-in benchmark: CKD and SEA (trainer/plugins) on the backbone and on MARGO, each part resumable
through the run store: ``quality`` (ml-latest-small, test metrics at the best-validation epoch; margo
rows continue from the backbone row's stage I), ``sweep`` (validation only, around the defaults),
``timing`` (s/epoch side by side in one process, relative to plain margo) and ``reliability`` (ROC-AUC
of 1 - w_i^m for corrupted (item, modality) pairs of synthetic data).

    .venv/bin/python -m bench.plugins [--quick | --seeds 0 1 2 | --report-only]
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import harness as H
from trainer.data import load_dataset
from trainer.reliability.calibrate import roc_auc
from trainer.train import fit

NAME = "plugins"
C = H.config(NAME)  # datasets, the rows of each part, the sweep around the defaults
ML_HP, MARGO_KW, SYNTH, SYNTH_MODS = C["ml_hp"], C["margo"], C["synth"], C["synth_modalities"]
SYNTH_MARGO, QUICK_SYNTH, PARTS = C["synth_margo"], C["quick_synth"], C["parts"]


def plugin_steps(path: str, base: dict[str, Any], meta: dict[str, Any], *, first: str, then: dict | None,
                 sets: list[list[str]]) -> list[H.Step]:
    """One row per plug-in set: ``first`` (a model) with the plug-ins and, when ``then`` is
    given, a row continuing from its stage I with those options. The first CKD row trains the
    teachers; the other CKD rows wait for it (the cache)."""
    steps: list[H.Step] = []
    first_ckd: str | None = None
    for plugins in sets:
        suffix = "".join(f"+{p.upper()}" for p in plugins)
        s1 = H.Step(f"{'backbone' if first == 'fusion-sum' else 'margo'}{suffix}", path,
                    {**base, "model": first, "plugins": list(plugins)},
                    "fit", parent=first_ckd if "ckd" in plugins else None, meta=meta)
        first_ckd = first_ckd or (s1.key if "ckd" in plugins else None)
        steps += [s1] + ([H.Step(f"margo{suffix}", path, {**s1.cfg, **then}, "fit", s1.key, meta)]
                         if then is not None else [])
    return steps


def timing(args: Any, path: str, log: H.Log) -> dict[str, Any]:
    """Epoch seconds of margo with each plug-in set, interleaved in one process."""
    torch.set_num_threads(args.threads)
    data, per = load_dataset(path), {}
    for rnd in range(args.timing_rounds):
        for label, row in list(C["timing"].items())[:: 6 if args.quick else 1]:  # quick: margo, margo+CKD+SEA
            # validation only at the last epoch of a stage (not timed anyway), never early stop
            cfg = H.train_config(**{**ML_HP, **MARGO_KW, **row}, epochs=args.timing_epochs,
                                 patience=1000, eval_every=args.timing_epochs, seed=rnd, threads=args.threads)
            res = fit(data, cfg, progress=False, plugin_cache=args.workdir / "timing-cache")
            for s in res.stages:  # the first epoch carries warm-up
                per.setdefault(label, {"I": [], "II": []})[s.stage] += s.epoch_seconds[1:]
            log(f"[timing] round {rnd} {label} {res.seconds:.1f}s")
    med = {label: {st: statistics.median(v) for st, v in row.items()} for label, row in per.items()}
    return {label: {"median_epoch_s": m, "relative": {st: m[st] / med["margo"][st] for st in m},
                    "n_epochs": {st: len(v) for st, v in per[label].items()}} for label, m in med.items()}


# -- reporting ---------------------------------------------------------------------------------------------
def _epochs(r: dict[str, Any]) -> str:
    return ", ".join(f"{x['stage']} {x['best_epoch']}/{x['epochs_run']}" for x in r["stages"])


def metric_rows(steps: list[H.Step], results: dict[str, dict]) -> list[dict[str, Any]]:
    rows: dict[str, list[dict]] = {}
    for s in (s for s in steps if s.key in results):
        rows.setdefault(s.label, []).append(results[s.key])
    return [{"row": label, "seeds": [r["step"]["cfg"]["seed"] for r in rs],
             **{k: H.mean_std([r["test"][k] for r in rs]) for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")},
             "valid_recall@20": H.mean_std([r["valid"]["recall@20"] for r in rs]), "epochs": [_epochs(r) for r in rs],
             "train_s": float(np.mean([sum(x["seconds"] for x in r["stages"]) for r in rs]))} for label, rs in rows.items()]


def auc_rows(steps: list[H.Step], results: dict[str, dict], path: str, runs: Path) -> list[dict[str, Any]]:
    data = load_dataset(path)
    mods = list(data.features)
    labels, out = np.stack([data.corruption[m] for m in mods], 1).astype(bool), []
    for s, r in ((s, results[s.key]) for s in steps if s.key in results):
        full = np.load(runs / r["weights_file"])  # softmax(W) [I, M], best-validation epoch
        w = full[:, [r["channels"].index(m) for m in mods]]  # the content modalities' columns (not "id")
        out.append({"row": s.label, "auc": roc_auc(labels.ravel(), (1 - w).ravel()),
                    "auc_per_modality": {m: roc_auc(labels[:, c], 1 - w[:, c]) for c, m in enumerate(mods)},
                    # spread of the weights: std of the first channel's weight, entropy of w
                    "w_std": float(w[:, 0].std()), "w_entropy": float(-(full * np.log(np.clip(full, 1e-12, None))).sum(1).mean()),
                    "valid_recall@20": r["valid"]["recall@20"], "test_recall@20": r["test"]["recall@20"], "epochs": _epochs(r)})
    return out


def teachers(runs: Path, dataset_name: str) -> list[dict[str, Any]]:
    """CKD's cached teachers of ``dataset_name`` (their info record), one per modality and mode."""
    out: list[dict[str, Any]] = []
    for f in sorted((runs / "plugin-cache").glob("ckd-teacher-*.npz")):
        with np.load(f) as z:
            info = json.loads(str(z["info"]))
        if info.get("dataset") == dataset_name and (info["modality"], info.get("mode")) not in {(t["modality"], t["mode"]) for t in out}:
            out.append({"file": f.name, "mode": info.get("mode"), **info})
    return out


def report(args: Any, rep: dict[str, Any], info: dict[str, Any]) -> str:
    q, lines, parts = rep.get("quality", []), [], []
    by_row = {r["row"]: r for r in q}
    for r in q:
        base = "margo" if r["row"].startswith("margo+") else "backbone"
        if r["row"] not in ("backbone", "margo") and base in by_row:
            (m, sd), (bm, bsd) = r["recall@20"], by_row[base]["recall@20"]
            verdict = "within one std" if abs(m - bm) <= max(sd, bsd) else ("better" if m > bm else "worse")
            lines.append(f"- {r['row']} vs {base}: test R@20 {m - bm:+.4f} ({verdict}); "
                         f"valid R@20 {r['valid_recall@20'][0] - by_row[base]['valid_recall@20'][0]:+.4f}")
    if lines:
        parts.append(H.template(NAME, "differences", lines="\n".join(lines)))
    if rep.get("sweep"):
        parts.append(H.template(NAME, "sweep", seed=args.seeds[0], lines="\n".join(
            f"- {r['row']}: valid R@20 {r['valid_recall@20']:.4f}" for r in rep["sweep"])))
    if short := [r["row"] for r in q if len(r["seeds"]) < len(args.seeds)]:
        parts.append(H.template(NAME, "incomplete", n=len(args.seeds), rows=", ".join(short)))
    if t := rep.get("timing"):
        cells = (("median_epoch_s", ".3f"), ("relative", ".2f"))
        table = H.md_table(["row", "stage I s/epoch", "x margo", "stage II s/epoch", "x margo"],
                           [[k, *(f"{v[key][s]:{f}}" for s in ("I", "II") for key, f in cells)]
                            for k, v in t.items()])
        parts.append(H.template(NAME, "timing", rounds=args.timing_rounds, epochs=args.timing_epochs,
                                table=table))
    if rep.get("teachers"):
        parts.append(H.template(NAME, "teachers", lines="\n".join(
            f"- {x['modality']}: valid R@20 {x['valid']['recall@20']:.4f}, test R@20 {x['test']['recall@20']:.4f}, "
            f"{x['seconds']:.0f}s" for x in rep["teachers"])))
    if rel := rep.get("reliability", []):
        keys, mods = ("w_std", "w_entropy", "valid_recall@20", "test_recall@20"), SYNTH_MODS
        table = H.md_table(["row", "AUC pooled", "AUC image", "AUC text", "w std", "w entropy", "valid R@20",
                            "test R@20", "epochs"],
                           [[r["row"], f"{r['auc']:.4f}", *(f"{r['auc_per_modality'][m]:.4f}" for m in mods),
                             *(f"{r[k]:.4f}" for k in keys), r["epochs"]] for r in rel])
        parts.append(H.template(NAME, "reliability", synth=SYNTH, mods=mods, margo=SYNTH_MARGO, table=table))
    metrics = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "valid_recall@20")
    table = H.md_table(["row", "seeds", "test R@10", "test R@20", "test N@10", "test N@20", "valid R@20",
                        "epochs (stage best/run)", "train s (mean)"],
                       [[r["row"], len(r["seeds"]), *(H.mean_pm(r[k], len(r["seeds"])) for k in metrics),
                         "; ".join(r["epochs"]), f"{r['train_s']:.0f}"] for r in q])
    quick = H.template(NAME, "quick", synth=QUICK_SYNTH) if args.quick else ""
    return H.template(NAME, "report", machine=H.machine_md(info), quick=quick, ml_hp=ML_HP, table=table,
                      alpha=MARGO_KW["alpha"], patience=args.patience, epochs=args.epochs,
                      parts="".join(parts)) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = H.parser(__doc__, ("--epochs", 300, "max epochs per stage (quality)"), ("--patience", 20, None),
                 ("--rel-epochs", 100, "max epochs per stage (synth)"), ("--timing-rounds", 2, None),
                 ("--timing-epochs", 3, None), ("--seeds", [0, 1, 2], None))
    p.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS, help="what to run (default all)")
    p.add_argument("--ml-latest-small", type=Path, default=H.ML_LATEST_SMALL)
    args = H.parse_args(p, argv, epochs=2, rel_epochs=2, timing_rounds=1, timing_epochs=2)
    log, info, runs, t0, rep = H.make_logger(args.workdir / f"{NAME}.log"), H.machine_info(args.threads), args.workdir / "runs", time.perf_counter(), {}
    if args.quick:  # every code path, few runs, small synthetic data for both datasets
        args.seeds, args.parts = args.seeds[:1], [x for x in args.parts if x != "sweep"]
        sets = [[], ["ckd", "sea"]]
        ml = synth = H.ensure_dataset(args.workdir / "data" / "plugins-quick", "import_synth", log=log, **QUICK_SYNTH,
                                      modalities={"image": 64, "text": 32}, corrupt_fraction=0.2, seed=0)
    else:
        sets = C["plugin_sets"]
        ml = H.ensure_dataset(args.workdir / "data" / "ml-latest-small", "import_movielens", args.ml_latest_small, log=log)
        synth = H.ensure_dataset(args.workdir / "data" / "synth-corrupt", "import_synth", log=log, **SYNTH,
                                 modalities=SYNTH_MODS, corrupt_fraction=0.2, seed=0)
    if "reliability" in args.parts:
        steps = plugin_steps(str(synth), {"epochs": args.rel_epochs, "patience": 10, "seed": 0, **SYNTH_MARGO},
                             {"dataset": "synth", "seed": 0, "stage1_cache": True}, first="margo", then=None, sets=sets)
        rep["reliability"] = auc_rows(steps, H.run_or_load(steps, args, runs, log), str(synth), runs)
    if "sweep" in args.parts:
        base = {"epochs": args.epochs, "patience": args.patience, "seed": args.seeds[0], **ML_HP, "model": "fusion-sum"}
        meta = {"dataset": "ml-latest-small", "seed": args.seeds[0], "phase": "sweep"}
        steps = [H.Step(f"backbone+{x['plugin'].upper()} {x['set']}", str(ml),
                        {**base, "plugins": [x["plugin"]], **x["set"]}, "fit", meta=meta) for x in C["sweep"]]
        res = H.run_or_load(steps, args, runs, log)
        rep["sweep"] = [{"row": s.label, "valid_recall@20": res[s.key]["valid"]["recall@20"]} for s in steps if s.key in res]
    if "quality" in args.parts:
        steps = []
        for seed in args.seeds:  # seed by seed, so that a cut-off run still has whole seeds
            base = {"epochs": args.epochs, "patience": args.patience, "seed": seed, **ML_HP}
            steps += plugin_steps(str(ml), base, {"dataset": "ml-latest-small", "seed": seed, "stage1_cache": True},
                                  first="fusion-sum", then=MARGO_KW, sets=sets)
        qres = H.run_or_load(steps, args, runs, log)
        rep["quality"] = metric_rows(steps, qres)
        defaults = [{"row": f"{s.label} ({'default' if '+' in s.label else 'no plug-in'})", "valid_recall@20": qres[s.key]["valid"]["recall@20"]}
                    for s in steps if s.key in qres and s.cfg["seed"] == args.seeds[0] and s.label in ("backbone", "backbone+CKD", "backbone+SEA")]
        if rep.get("sweep"):  # the defaults on the sweep's seed, for comparison
            rep["sweep"] = defaults + rep["sweep"]
    rep["teachers"] = teachers(runs, load_dataset(ml).name)
    json_path = args.results / f"{NAME}.json"
    if "timing" in args.parts and not args.report_only:
        rep["timing"] = timing(args, str(ml), log)
    elif json_path.is_file():  # keep the last measured timing table
        rep["timing"] = json.loads(json_path.read_text()).get("timing")
    H.write_report(args.results, NAME, {"machine": info, "args": vars(args), **rep},
                   report(args, rep, info), log=log)
    log(f"[bench] {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
