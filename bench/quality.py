"""Quality benchmark: test Recall/NDCG@10/20 of the baselines and of every fusion on both
backbones, 3 seeds, MMRec's reference figures on the same splits beside ours (mlsmall-mmrec and
amazon-scientific-mmrec, read unchanged), and the trainer's default model on SYNTH beside the ID-only
LightGCN. The report states the protocol; the *default model* and the best MARGO configuration are
chosen on validation only. Every run is a JSON under WORKDIR/runs: an interrupted run resumes.

    .venv/bin/python -m bench.quality [--quick | --report-only]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness as H

NAME = "quality"
DATASETS = ("mlsmall-mmrec", "amazon-scientific-mmrec")
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
C = H.config(NAME)  # MMRec's reference figures, the baselines' settings, the sweeps, SYNTH's shape
# dataset -> MMRec model -> (R@10, R@20, N@10, N@20), None where MMRec reports no figure
REFERENCE = {ds: {m: tuple(v.get(k) for k in ("r10", "r20", "n10", "n20")) for m, v in t.items()}
             for ds, t in C["reference"].items()}
BEST_ANCHOR, REF_OF_ROW, BASELINE_CFG = C["best_anchor"], C["ref_of_row"], C["baselines"]
SWEEP, SCREEN, SYNTH_ARGS = C["sweep"], C["screen"], C["synth"]
# values chosen on validation by the earlier sweeps (mlsmall-mmrec, seed 0): margo alpha 0.01
# with a faster W (weight_lr 1e-2); fusion-learned keeps the stage lr (None)
ROW_CFG: dict[str, dict[str, Any]] = {"margo": {"alpha": 0.01, "weight_lr": 1e-2},
                                      "fusion-learned": {"weight_lr": None}}
QUICK = {"epochs": 3, "patience": 3}
# MMRec's optimiser settings, explicit in every run (the trainer's defaults moved to the sweep's
# winner): baselines and rows without an lr or d in their label use them
PROTOCOL = {"dim": 64, "lr": 1e-3}
# the default model is chosen among rows of at most this d: d 128 takes 14.0 s per FREEDOM epoch on
# the Baby shape (7.9 s at d 64, side by side), past issue 17's 10 s target
DEFAULT_MAX_DIM = 64
SCREEN_AT = (DATASETS[0], 0)  # (dataset, seed) of the screening
VARIANTS = {"standardised": {"feature_norm": "standardize"}, "prune 0.5": {"prune_ratio": 0.5}, **SWEEP,
            **SCREEN}
PRUNE = {"freedom": {"prune_ratio": 0.8}}  # freedom rows without a prune variant: the old default
# the rows of an earlier report whose run store is gone (summarise says how they are used)
EARLIER = H.RESULTS / f"{NAME}_earlier.json"
SYNTH = "synth-skewed"  # "never below ID-only LightGCN" on data built to be hard (the config)


# -- steps --------------------------------------------------------------------------------------
def fusion_chain(path: str, base: dict[str, Any], backbone: str, id_channel: bool, meta: dict[str, Any],
                 variant: str = "") -> list[H.Step]:
    """Stage I (fusion-sum) of one backbone and the stage-II rows that continue from it."""
    tag = f"{'+id' if id_channel else ''} [{backbone}{', ' + variant if variant else ''}]"
    cfg = {**base, "model": "fusion-sum", "backbone": backbone, "id_channel": id_channel,
           **PRUNE.get(backbone, {}), **VARIANTS.get(variant, {})}
    s1 = H.Step(f"fusion-sum{tag}", path, cfg, "stage1", meta=meta)
    return [s1] + [H.Step(f"{m}{tag}", path, {**cfg, "model": m, **ROW_CFG[m]}, "branch", s1.key, meta)
                   for m in ("margo", "fusion-learned")[: 1 if id_channel else 2]]


def plan(args: argparse.Namespace) -> list[H.Step]:
    """Every run, most important first: priority 1 on every dataset and seed before priority 2."""
    tiers: list[list[H.Step]] = [[], [], []]
    for seed in args.seeds:
        for ds in [d for d in args.datasets if d != SYNTH]:
            path, meta = str(H.DATA / ds), {"dataset": ds, "seed": seed}
            base = {"seed": seed, "epochs": args.epochs, "patience": args.patience, **PROTOCOL,
                    **(QUICK if args.quick else {})}
            # the ID baselines climb slowly on mlsmall-mmrec: patience 20 stopped them early
            # (BPR 0.2571, LightGCN 0.2347 +- 0.038), so they get patience 50 (as MMRec's MGCN)
            bl, own = {**base, "patience": args.baseline_patience,
                       **(QUICK if args.quick else {})}, BASELINE_CFG[ds]
            ids = H.Step("lightgcn", path, {**bl, "model": "lightgcn", **own["lightgcn"]}, meta=meta)
            bpr = H.Step("bpr", path, {**bl, "model": "bpr", **own["bpr"]}, meta=meta)
            tiers[0] += [*fusion_chain(path, base, "freedom", True, meta), ids, bpr,
                         *fusion_chain(path, base, "freedom", False, meta)]
            for v in VARIANTS:  # feature standardisation, lighter edge pruning (synth-skewed)
                if v not in SCREEN or (ds, seed) == SCREEN_AT:
                    tiers[1] += fusion_chain(path, base, "freedom", True, meta, v)
            for id_channel in (False, True):
                tiers[1] += fusion_chain(path, base, "dragon", id_channel, meta)
            # VBPR climbs like BPR: validation R@20 on mlsmall-mmrec rose on every seed with patience 50
            # (0.2409 / 0.2557 / 0.2525 -> 0.2559 / 0.2631 / 0.2651)
            tiers[2].append(H.Step("vbpr", path, {**bl, "model": "vbpr"}, meta=meta))
    steps = [s for tier in tiers for s in tier]
    if args.synth and SYNTH in args.datasets:
        steps += synth_plan(args)
    if args.rows:
        wanted = {s.key for s in steps if s.label in args.rows}
        wanted |= {s.parent for s in steps if s.key in wanted and s.parent}
        steps = [s for s in steps if s.key in wanted]
    return steps


DEFAULT_FIELDS = ("model", "backbone", "id_channel", "feature_norm", "prune_ratio", "alpha", "weight_lr",
                  "reg_weight", "lr", "dim")
_MARGO_ID = {"model": "margo", "backbone": "freedom", "id_channel": True, "feature_norm": "none",
             "prune_ratio": 0.8, "alpha": 0.01, "weight_lr": 0.01, "reg_weight": 1e-3, **PROTOCOL}
SYNTH_ROWS: dict[str, dict[str, Any]] = {
    "margo+id [freedom]": _MARGO_ID, "margo+id [freedom, standardised]": {**_MARGO_ID, "feature_norm": "standardize"},
    "margo+id [freedom, standardised, prune 0.5]": {**_MARGO_ID, "feature_norm": "standardize", "prune_ratio": 0.5},  # issue 17
    "margo+id [freedom, standardised, prune 0.5, lr 2e-3]": {**_MARGO_ID, "feature_norm": "standardize",
                                                             "prune_ratio": 0.5, "lr": 2e-3},
    "margo [dragon]": {"model": "margo", "backbone": "dragon", "id_channel": False, "feature_norm": "none",
                       **ROW_CFG["margo"], **PROTOCOL},
    "lightgcn": {"model": "lightgcn", "reg_weight": 1e-4, **PROTOCOL}}


def default_cfg() -> dict[str, Any]:
    """The trainer's default model on SYNTH as explicit fields (a changed default is a new run);
    feature_norm auto as the standardize it runs on SYNTH (tests/trainer/test_freedom.py)."""
    from trainer.config import TrainConfig
    d = {k: getattr(TrainConfig(), k) for k in DEFAULT_FIELDS}
    return {**d, "feature_norm": "standardize"} if d["feature_norm"] == "auto" else d


def is_trainer_default(cfg: dict[str, Any]) -> bool:
    """Whether a real-dataset row ran the trainer's default model (feature_norm aside: auto runs
    those sets raw); a field the row leaves out was PROTOCOL's or else the trainer's default."""
    from trainer.config import TrainConfig
    d, cfg = TrainConfig(), {**PROTOCOL, **cfg}
    return all(cfg.get(k, getattr(d, k)) == getattr(d, k) for k in DEFAULT_FIELDS if k != "feature_norm")


def default_label(table: dict[str, Any]) -> str | None:
    return next((k for k, r in table.items()
                 if {f: r["cfg"].get(f) for f in DEFAULT_FIELDS} == default_cfg()), None)


def synth_plan(args: argparse.Namespace) -> list[H.Step]:
    """SYNTH_ROWS (and the trainer's default model, if it is none of them) on SYNTH, built once
    under WORKDIR; lightgcn with the baselines' patience."""
    path, rows = str(args.workdir / "data" / SYNTH), dict(SYNTH_ROWS)
    if default_cfg() not in rows.values():
        rows["default model"] = default_cfg()
    out = []
    for seed in args.seeds[: args.synth]:
        for label, cfg in rows.items():
            pat = args.baseline_patience if cfg["model"] in ("bpr", "lightgcn", "vbpr") else args.patience
            base = {"seed": seed, "epochs": args.epochs, "patience": pat, **(QUICK if args.quick else {})}
            out.append(H.Step(label, path, {**base, **cfg}, meta={"dataset": SYNTH, "seed": seed}))
    return out


# -- summary ------------------------------------------------------------------------------------
def seed_record(r: dict[str, Any]) -> dict[str, Any]:
    """One finished run as the per-seed numbers a row aggregates."""
    return {"seed": r["step"]["meta"]["seed"], "test": {k: r["test"][k] for k in METRICS},
            "valid_r20": r["valid"]["recall@20"],
            "seconds": r["seconds"], "epochs": [(s["stage"], s["best_epoch"], s["epochs_run"]) for s in r["stages"]],
            # BestState: a stage II that never beat stage I hands back stage I's state
            "kept_stage1": len(r["stages"]) > 1 and r["stages"][-1]["best_valid_r20"] is not None
            and r["valid"]["recall@20"] > r["stages"][-1]["best_valid_r20"],
            "epoch_s": [s["median_epoch_s"] for s in r["stages"] if s["median_epoch_s"]], "run": r["key"]}


def earlier_records(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-seed numbers of an earlier one-seed row (its mean is that seed's value)."""
    return [{"seed": row["seeds"][0], "test": {k: row[f"test_{k}"][0] for k in METRICS},
             "valid_r20": row["valid_recall@20"][0],
             "seconds": row["seconds"][0], "epochs": [tuple(e) for e in row["epochs"][0]], "kept_stage1": bool(row["kept_stage1"]),
             "epoch_s": [row["median_epoch_s"][0]], "run": "earlier"}]


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Configs equal up to fields set to None (the trainer's default when the earlier run was
    made, e.g. fusion-learned's weight_lr) or left out where PROTOCOL now sets them."""
    a, b = {**PROTOCOL, **a}, {**PROTOCOL, **b}
    return {k: v for k, v in a.items() if v is not None} == {k: v for k, v in b.items() if v is not None}


def aggregate(recs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"seeds": [x["seed"] for x in recs],
            **{f"test_{k}": H.mean_std([x["test"][k] for x in recs]) for k in METRICS},
            "valid_recall@20": H.mean_std([x["valid_r20"] for x in recs]), "epochs": [x["epochs"] for x in recs],
            "seconds": H.mean_std([x["seconds"] for x in recs]), "kept_stage1": sum(x["kept_stage1"] for x in recs),
            "median_epoch_s": H.mean_std([e for x in recs for e in x["epoch_s"]]), "runs": [x["run"] for x in recs]}


def summarise(steps: list[H.Step], results: dict[str, dict],
              earlier: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """dataset -> row label -> mean/std of every metric over the finished seeds. ``earlier`` (an
    earlier report's rows, EARLIER) fills in what this run store lacks, for rows of the very same
    config: a one-seed earlier row joins this store's other seeds; an earlier row of several seeds
    (only its mean and std survive) stands for a row with no run here."""
    out: dict[str, dict[str, Any]] = {}
    for ds in dict.fromkeys(s.meta["dataset"] for s in steps):
        out[ds] = table = {}
        for label in dict.fromkeys(s.label for s in steps if s.meta["dataset"] == ds):
            mine = [s for s in steps if s.meta["dataset"] == ds and s.label == label]
            cfg = {k: v for k, v in mine[0].cfg.items() if k != "seed"}
            recs = [seed_record(results[s.key]) for s in mine if s.key in results]
            old = (earlier or {}).get(ds, {}).get(label)
            old, carried = old if old and _same(old["cfg"], cfg) else None, []
            if old and len(old["seeds"]) == 1 and old["seeds"][0] not in [x["seed"] for x in recs]:
                recs, carried = sorted(recs + earlier_records(old),
                                       key=lambda x: x["seed"]), list(old["seeds"])
            row = {"seeds_planned": [s.meta["seed"] for s in mine], **aggregate(recs)}
            if old and not recs:
                row.update({k: v for k, v in old.items() if k != "cfg"}, runs=["earlier"] * len(old["seeds"]))
                carried = list(old["seeds"])
            table[label] = {**row, "earlier_seeds": carried, "cfg": cfg}
    return out


def select(summary: dict[str, dict[str, Any]], prefix: tuple[str, ...]) -> str | None:
    """The row (among labels starting with ``prefix``) with the best mean over the datasets of
    validation Recall@20 relative to the dataset's best such row, among the rows measured on the
    most datasets (all of them once the benchmark is complete: a screening row never is)."""
    score: dict[str, list[float]] = {}
    for table in summary.values():
        if cand := {k: v["valid_recall@20"][0] for k, v in table.items()
                    if k.startswith(prefix) and v["seeds"]}:
            for k, v in cand.items():
                score.setdefault(k, []).append(v / max(cand.values()))
    most = max((len(v) for v in score.values()), default=0)
    full = {k: float(np.mean(v)) for k, v in score.items() if len(v) == most}
    return max(full, key=full.__getitem__) if full else None


# -- report -------------------------------------------------------------------------------------
def _epochs(runs: list[list]) -> str:
    per: dict[str, list[str]] = {}
    for st, best, ran in (e for run in runs for e in run):
        per.setdefault(st, []).append(f"{best}/{ran}")
    return "; ".join(f"{st} {', '.join(v)}" for st, v in per.items()) or "–"


def _test(table: dict[str, Any], label: str | None) -> tuple[float, float, int]:
    """A row's test Recall@20 mean and std and its number of seeds (0 for a missing row)."""
    r = table.get(label or "")
    return (*r["test_recall@20"], len(r["seeds"])) if r and r["seeds"] else (math.nan, math.nan, 0)


def _verdict(ok: bool, n: int) -> str:
    return "n/a (missing runs)" if n == 0 else ("holds" if ok else "does not hold")


def dataset_md(ds: str, table: dict[str, Any], default: str | None) -> list[str]:
    head = ["model", "seeds", "test R@10", "test R@20", "test N@10", "test N@20", "valid R@20",
            "epochs (stage best/run)", "s / run", "s / epoch", "MMRec R@20 (same split)"]
    rows = []
    for label, r in table.items():
        n, missing = len(r["seeds"]), sorted(set(r["seeds_planned"]) - set(r["seeds"]))
        seeds = f"{n}" + (f" (missing seed {', '.join(map(str, missing))})" if missing else "")
        if old := r.get("earlier_seeds"):
            seeds += f" (seed {', '.join(map(str, old))}: earlier report)"
        kept = f" (stage I kept: {r['kept_stage1']})" if r["kept_stage1"] else ""
        refs = [f"{x}: {REFERENCE[ds][x][1]:.4f}" for x in REF_OF_ROW.get(label, ()) if x in REFERENCE[ds]]
        rows.append([f"**{label}** (default)" if label == default else label, seeds,
                     *(H.mean_pm(r[k], n) for k in [*(f"test_{m}" for m in METRICS), "valid_recall@20"]),
                     _epochs(r["epochs"]) + kept, H.mean_pm(r["seconds"], n, 0),
                     H.mean_pm(r["median_epoch_s"], n, 2), "; ".join(refs)])
    return [f"## {ds}\n", H.md_table(head, rows), H.template(NAME, "reference"),
            H.md_table(["model (MMRec)", "R@10", "R@20", "N@10", "N@20"],
                       [[name, *vals] for name, vals in REFERENCE[ds].items()]), ""]


def goals_md(summary: dict[str, dict[str, Any]], default: str | None, best: str | None) -> list[str]:
    same = bool(default) and all(is_trainer_default(t[default]["cfg"]) for t in summary.values() if default in t)
    lines = ["## Goals (test Recall@20, mean ± std over the finished seeds)\n",
             H.template(NAME, "goals", default=default or "not yet chosen: rows missing", best=best or "–",
                        max_dim=DEFAULT_MAX_DIM,
                        same="are this row" if same else "are **not** this row")]
    per_ds = []
    for ds, t in summary.items():  # each dataset alone (rows missing elsewhere included)
        if cand := {k: v["valid_recall@20"][0] for k, v in t.items()
                    if v["seeds"] and k.startswith(("fusion-sum", "fusion-learned", "margo"))}:
            per_ds.append(f"{ds}: {(top := max(cand, key=cand.__getitem__))} ({cand[top]:.4f})")
    lines.append(f"  - best fusion row on validation per dataset alone: {'; '.join(per_ds)}")
    have = [ds for ds, t in summary.items() if default in t and t[default]["seeds"]]
    if default and len(have) < len(summary):
        lines.append(f"  - chosen on {', '.join(have)} only: the other datasets' fusion rows are missing")
    for ds, t in summary.items():
        (d, ds_, dn), (lg, lgs, ln), (b, bs, bn) = (_test(t, x) for x in (default, "lightgcn", best))
        anchor = BEST_ANCHOR[ds]
        a = REFERENCE[ds][anchor][1] or math.nan
        margin = _verdict(b - bs > a, bn)
        if bn == 1:  # one seed has no std: only the sign can be read
            margin = f"{'above' if b > a else 'below'} (1 seed: the one-std margin is unchecked)"
        lines.append(f"- {ds}: default {H.mean_pm((d, ds_), dn)} vs ID-only lightgcn "
                     f"{H.mean_pm((lg, lgs), ln)}: {_verdict(d >= lg, min(dn, ln))}; best margo "
                     f"{H.mean_pm((b, bs), bn)} vs {anchor} {a:.4f} by at least one std: {margin}")
        for label in ("bpr", "lightgcn"):
            m, s, n = _test(t, label)
            if (refs := [REFERENCE[ds][x][1] for x in REF_OF_ROW[label] if x in REFERENCE[ds]]) and n:
                ok = abs(m - refs[0]) <= max(s, 1e-12) or m > refs[0]
                lines.append(f"  - {label} {H.mean_pm((m, s), n)} vs MMRec {refs[0]:.4f}: "
                             + ("within one std or above" if ok else "below by > one std"))
    return lines + [""]


def notes_md(summary: dict[str, dict[str, Any]], synth: dict[str, Any], epochs: int) -> list[str]:
    """Feature standardisation on validation beside the default, and the runs the cap cut."""
    raw, std, per, missing, lines = "margo+id [freedom]", "margo+id [freedom, standardised]", [], [], []
    tables = [*summary.items(), (SYNTH, synth)]
    for ds, t in tables:
        a, b = t.get(raw), t.get(std)
        if not (b and b["seeds"]):
            missing.append(ds)
        if a and b and a["seeds"] and b["seeds"]:
            na, nb = len(a["seeds"]), len(b["seeds"])
            per.append(f"{ds} {H.mean_pm(a['valid_recall@20'], na)} ({na} seeds) vs "
                       f"{H.mean_pm(b['valid_recall@20'], nb)} ({nb})")
    if per:
        gap = f"; not measured on {', '.join(missing)}, so the selection above cannot choose it yet"
        lines.append(H.template(NAME, "standardised", raw=raw, per="; ".join(per),
                                gap=gap if missing else ""))
    if capped := sorted({f"{label} ({ds})" for ds, t in tables for label, r in t.items()
                         for run in r["epochs"] for _, _, ran in run if ran >= epochs}):
        lines.append(H.template(NAME, "capped", epochs=epochs, rows=", ".join(capped)))
    return lines


def synth_md(table: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """SYNTH: the default model against the ID-only LightGCN (the target), other rows beside."""
    if not table:
        return []
    dl = default_label(table)
    keys = ("test_recall@20", "test_ndcg@20", "valid_recall@20")
    rows = [[f"**{label}** (default)" if label == dl else label, len(r["seeds"]),
             *(H.mean_pm(r[k], len(r["seeds"])) for k in keys),
             _epochs(r["epochs"]), H.mean_pm(r["seconds"], len(r["seeds"]), 0)] for label, r in table.items()]
    (d, _, dn), (lg, _, ln) = (_test(table, x) for x in (dl, "lightgcn"))
    return [H.template(NAME, "synth", synth=SYNTH, args=SYNTH_ARGS, default=default_cfg(),
                       patience=args.baseline_patience, verdict=_verdict(d >= lg, min(dn, ln))),
            H.md_table(["model", "seeds", "test R@20", "test N@20", "valid R@20", "epochs (stage best/run)",
                        "s / run"], rows), ""]


def report(args: argparse.Namespace, steps: list[H.Step], results: dict[str, dict]) -> None:
    earlier = None
    if args.earlier and Path(args.earlier).is_file():
        earlier = json.loads(Path(args.earlier).read_text())["summary"]
    summary = summarise([s for s in steps if s.meta["dataset"] != SYNTH], results, earlier)
    synth = summarise([s for s in steps if s.meta["dataset"] == SYNTH], results, earlier).get(SYNTH, {})
    fusions = ("fusion-sum", "fusion-learned", "margo")
    fast = {ds: {k: r for k, r in t.items() if {**PROTOCOL, **r["cfg"]}["dim"] <= DEFAULT_MAX_DIM}
            for ds, t in summary.items()}
    default, best = select(fast, fusions), select(summary, ("margo",))
    info, done, planned = H.machine_info(args.threads), sum(s.key in results for s in steps), len(steps)
    md = [H.template(NAME, "protocol", machine=H.machine_md(info, f"; runs finished: {done} of {planned}"),
                     a=args, prune=PRUNE["freedom"]["prune_ratio"], margo=ROW_CFG["margo"],
                     baselines=BASELINE_CFG, earlier=EARLIER.name)]
    if args.quick:
        md.append(f"**QUICK SMOKE RUN** ({QUICK}): the numbers mean nothing.\n")
    md += goals_md(summary, default, best)
    ds0, seed0 = SCREEN_AT
    if scr := [f"{v} {r['valid_recall@20'][0]:.4f}" for v in SCREEN
               if (r := summary.get(ds0, {}).get(f"margo+id [freedom, {v}]")) and r["seeds"]]:
        md.insert(-1, H.template(NAME, "screen", dataset=ds0, seed=seed0, rows="; ".join(scr)))
    (d, ds_, dn), (lg, lgs, ln) = (_test(synth, x) for x in (default_label(synth), "lightgcn"))
    if dn and ln:
        md.insert(-1, f"- {SYNTH} (below): the trainer's default model {H.mean_pm((d, ds_), dn)} "
                      f"vs ID-only lightgcn {H.mean_pm((lg, lgs), ln)}: {_verdict(d >= lg, 1)}")
    md[-1:-1] = notes_md(summary, synth, args.epochs)
    for ds, table in summary.items():
        md += dataset_md(ds, table, default)
    md += synth_md(synth, args)
    data = {"machine": info, "args": vars(args), "default_row": default, "best_margo_row": best,
            "summary": summary,
            "synth": {"args": SYNTH_ARGS, "summary": synth}, "reference": REFERENCE, "runs_finished": done, "runs_planned": planned}
    H.write_report(args.results, NAME, data, "\n".join(md),
                   weight_figures(args, steps, results, earlier), log=print)


def weight_figures(args: argparse.Namespace, steps: list[H.Step], results: dict,
                   earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """Histogram of the learned image/first-modality weight of every margo row (first seed)."""
    if (plt := H.pyplot()) is None or args.quick:
        return {}
    figs = {}
    for ds in [d for d in args.datasets if d != SYNTH]:
        rows = [(s.label, results[s.key]) for s in steps
                if s.meta["dataset"] == ds and s.meta["seed"] == args.seeds[0]
                and s.label.startswith("margo") and s.key in results and results[s.key].get("weights_file")]
        if not rows or any(k.startswith("margo") for k in (earlier or {}).get(ds, {})):
            continue  # an earlier report's figure stays: its weights are not in this run store
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for label, r in rows:
            ax.hist(np.load(args.workdir / "runs" / r["weights_file"])[:, 0], bins=40, range=(0, 1),
                    histtype="step", label=label)
        ax.set(xlabel=f"softmax weight of channel {rows[0][1]['channels'][0]!r}", ylabel="items",
               title=f"{ds}: learned per-item weights (seed {args.seeds[0]})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs[f"{NAME}_weights_{ds}.png"] = fig
    return figs


def main(argv: list[str] | None = None) -> int:
    p = H.parser(__doc__, ("--seeds", [0, 1, 2], None), ("--epochs", 300, "maximum epochs per stage"),
                 ("--patience", 20, "early stop of the fusion rows"),
                 ("--baseline-patience", 50, "early stop of bpr, lightgcn and vbpr (slow climbers: patience 20 cut "
                                             "them)"), ("--synth", 3, f"{SYNTH} seeds (0: none)"),
                 ("--earlier", str(EARLIER), "an earlier report's rows to fill in what the run store lacks "
                                             "('' none)"))
    p.add_argument("--datasets", nargs="+", default=[*DATASETS, SYNTH], choices=[*DATASETS, SYNTH])
    p.add_argument("--rows", nargs="+", help="only these row labels (and their stage-I parents)")
    args = H.parse_args(p, argv)
    if args.quick:
        args.datasets, args.seeds, args.synth = args.datasets[:1], args.seeds[:1], 0
    log, steps = H.make_logger(args.workdir / f"{NAME}.log"), plan(args)
    if args.synth and not args.report_only and any(s.meta["dataset"] == SYNTH for s in steps):
        H.ensure_dataset(args.workdir / "data" / SYNTH, "import_synth", log=log, **SYNTH_ARGS)
    log(f"[bench] {len(steps)} runs planned")
    report(args, steps, H.run_or_load(steps, args, args.workdir / "runs", log))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
