"""Reliability benchmark (issue 15): does the reliability score find corrupted content, and
does a fusion guided by it keep its Recall@20 when content is corrupted? Cases (20% of items
corrupted in one modality per seed; the mask is written beside the copy and read only here),
models and targets: bench/configs/reliability.toml. Detection: ROC-AUC and precision at
#corrupted of the audit, the score, its signals and 1 - the learned weights; recall: test
Recall@20 on clean and corrupted data (trainer defaults pinned in PINNED).

    .venv/bin/python -m bench.reliability [--quick | --report-only | --train-seeds]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from bench import harness as H
from trainer.data import load_dataset, write_dataset
from trainer.reliability import ReliabilityConfig, score_items
from trainer.reliability.calibrate import roc_auc
from trainer.reliability.signals import unit_rows

NAME = "reliability"
SOURCES = {"mlsmall": H.MLSMALL_MMREC, "sci": H.DATA / "amazon-scientific-mmrec"}
C = H.config(NAME)  # cases, models and targets, with the reasons for them
CASES, SYNTH, GUIDED, REPAIR, SIGNALS = (C[k] for k in ("cases", "synth", "guided", "repair", "signals"))
PRIOR, BUCKETS, FRACTION = GUIDED["margo+prior"]["reliability_prior"], C["buckets"], C["fraction"]
MODELS = ("fusion-sum", "margo", *GUIDED, *REPAIR)
PINNED = {"backbone": "dragon", "id_channel": False, "alpha": 0.1, "weight_lr": None}


# -- datasets -----------------------------------------------------------------------------------
def clean_path(args: argparse.Namespace, source: str, seed: int, log: Any) -> Path:
    if source != "synth":
        return SOURCES[source]
    return H.ensure_dataset(args.workdir / "data" / f"synth-clean-s{seed}", "import_synth", log=log, **SYNTH,
                            corrupt_fraction=0.0, seed=seed, name="synth_clean")


def corrupt_path(args: argparse.Namespace, case: str, seed: int, log: Any) -> Path:
    """The corrupted copy of ``case`` for ``seed`` (built once under WORKDIR/data, same split and ids)."""
    out, (source, modality) = args.workdir / "data" / f"{case}-s{seed}", CASES[case]
    if not modality:  # synth: the importer's own planted corruption
        return H.ensure_dataset(out, "import_synth", log=log, **SYNTH, corrupt_fraction=FRACTION, seed=seed,
                                name="synth_corrupt")
    if (out / "stats.json").is_file():
        return out
    d, rng = load_dataset(clean_path(args, source, seed, log)), np.random.default_rng(1000 + seed)
    bad = rng.choice(n := d.n_items, size=round(FRACTION * n), replace=False)
    src = (bad + rng.integers(1, n, size=bad.size)) % n  # another item, never itself
    feats = {m: f.copy() for m, f in d.features.items()}
    feats[modality][bad] = d.features[modality][src]
    mask = {m: np.zeros(n, dtype=bool) for m in feats}
    mask[modality][bad] = True
    log(f"[bench] writing {out}")
    parts = [np.c_[x, np.full(len(x), k, np.int64)] for k, x in enumerate((d.train, d.valid, d.test))]
    note = f"seed {seed}: {modality} rows of {bad.size} items swapped for other items' rows"
    write_dataset(out, name=out.name, interactions=np.concatenate(parts), features=feats, user_ids=d.user_ids,
                  item_ids=d.item_ids, item_meta=d.item_meta, corruption=mask, overwrite=True,
                  stats={"corruption": note})
    return out


# -- detection ----------------------------------------------------------------------------------
def precision_at_n(labels: np.ndarray, suspicion: np.ndarray) -> float:
    """Share of truly corrupted pairs among the len(corrupted) most suspicious."""
    n = int(labels.sum())
    return float(labels[np.argsort(-suspicion, kind="stable")[:n]].mean()) if n else float("nan")


def detect(path: Path, seed: int) -> dict[str, Any]:
    """The score's and the audit's suspicion of every corrupted-candidate pair (in a worker)."""
    data = load_dataset(path)
    mods = [m for m, c in (data.corruption or {}).items() if c.any()]  # labels [n_items, len(mods)]
    labels = np.stack([data.corruption[m] for m in mods], 1)
    t = time.perf_counter()
    # the score gets the data without its mask (it never reads it; this makes that explicit)
    rel = score_items(dataclasses.replace(data, corruption=None), cfg=ReliabilityConfig(seed=seed))
    seconds, cols = time.perf_counter() - t, [rel.modalities.index(m) for m in mods]
    out = {"labels": labels, "score": 1.0 - rel.score[:, cols]}
    for name, key in (("audit", "agreement"), *((s, s) for s in SIGNALS if s in rel.signals)):
        sig = np.nan_to_num(rel.signals[key][:, cols], nan=0.0)  # per-modality ranks: scales pool fairly
        out[name] = np.stack([(rankdata(-sig[:, j]) - 1) / max(len(sig) - 1, 1) for j in range(len(cols))], 1)
    return {"mods": mods, "seconds": round(seconds, 1), "self_auc": rel.method["auc_on_injected_copies"],
            **{k: v.tolist() for k, v in out.items()}}


def detection_rows(args: argparse.Namespace, paths: dict, res: dict, steps: dict, log: Any) -> dict:
    """case -> seed -> scorer -> {auc, precision}; detectors cached under WORKDIR/detect."""
    (cache := args.workdir / "detect").mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    for (case, seed), path in paths.items():
        if not (f := cache / f"{case}-s{seed}.json").is_file():
            if args.report_only:
                continue
            H.atomic_write_json(f, det := H.isolated(detect, path, seed))
            log(f"[bench] detection {case} seed {seed}: {det['seconds']}s")
        det = json.loads(f.read_text())
        labels = np.asarray(det["labels"], bool)
        scorers = {k: np.asarray(det[k]) for k in ("score", "audit", *SIGNALS) if k in det}
        for model in ("fusion-learned", "margo", *GUIDED):
            r = res.get(steps.get((case, seed, "corrupt", model), H.Step("", "", {})).key)
            # the exported weights are uniform when stage I won on validation (BestState), so
            # the weights after the last stage-II epoch are scored too
            for tag, key in (("weights", "weights_file"), ("last-epoch weights", "weights_last_file")):
                if r and r.get(key):
                    w = np.load(args.workdir / "runs" / r[key])
                    scorers[f"{model} {tag}"] = np.stack([1 - w[:, r["channels"].index(m)] for m in det["mods"]], 1)
        row = {k: {"auc": roc_auc(labels.ravel(), s.ravel()),
                   "precision": precision_at_n(labels.ravel(), s.ravel())} for k, s in scorers.items()}
        row["_seconds"], row["_self_auc"] = det["seconds"], det["self_auc"]
        d = load_dataset(path)  # the score's AUC by the items' training interactions (its evidence)
        n = np.bincount(d.train[:, 1], minlength=d.n_items)
        row["_by_interactions"] = {}
        for lo, hi in BUCKETS:
            rows = (n >= lo) & (n < hi)
            row["_by_interactions"][f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"] = {
                k: roc_auc(labels[rows].ravel(), scorers[k][rows].ravel()) for k in ("score", "audit")}
        if CASES[case][1]:  # a swap can land on content much like the item's own
            row["_by_swap_similarity"] = by_swap_similarity(args, case, seed, d, labels, scorers["score"])
        out.setdefault(case, {})[seed] = row
    return out


def by_swap_similarity(args: argparse.Namespace, case: str, seed: int, d: Any, labels: np.ndarray,
                       suspicion: np.ndarray) -> dict[str, dict[str, float]]:
    """The score's ROC-AUC against all clean items, for the swaps whose swapped-in content has
    cosine in each similarity range to the item's own (clean) content, and their count."""
    source, modality = CASES[case]
    own = unit_rows(load_dataset(clean_path(args, source, seed, print)).features[modality])
    cos, lab, sus, out = (own * unit_rows(d.features[modality])).sum(1), labels[:, 0], suspicion[:, 0], {}
    for lo, hi in C["similarity"]:
        keep = ~lab | ((cos >= lo) & (cos < hi))
        out[f"[{lo:g}, {min(hi, 1):g}{')' if hi <= 1 else ']'}"] = {"auc": roc_auc(lab[keep], sus[keep]),
                                                                    "swaps": int((lab & keep).sum())}
    return out


# -- training -----------------------------------------------------------------------------------
def plan_training(args: argparse.Namespace, paths: dict, log: Any) -> tuple[list[H.Step], dict]:
    """Steps in priority order (seed by seed) and (case, seed, version, model) -> step."""
    steps: list[H.Step] = []
    index: dict[tuple, H.Step] = {}
    for seed in args.train_seeds:
        later: list[H.Step] = []  # the learned-weights detector's extra run after the seed's main runs
        repair: list[H.Step] = []  # the repaired-content runs right after the main runs
        for case in args.train_cases:
            versions = {"corrupt": paths[(case, seed)], "clean": clean_path(args, CASES[case][0], seed, log)}
            for version, path in versions.items():
                base = {"epochs": args.epochs, "patience": args.patience, "seed": seed, **PINNED}
                s1 = H.Step("fusion-sum", str(path), {**base, "model": "fusion-sum"}, "stage1",
                            meta={"case": case, "seed": seed, "version": version})
                steps.append(s1)
                index[(case, seed, version, "fusion-sum")] = s1
                for label, kw in REPAIR.items():
                    repair.append(st := H.Step(label, str(path), {**base, **kw}, "fit", meta=s1.meta))
                    index[(case, seed, version, label)] = st
                branches = {"margo": {"model": "margo"}, **GUIDED}
                if version == "corrupt":
                    branches["fusion-learned"] = {"model": "fusion-learned"}
                for label, kw in branches.items():
                    st = H.Step(label, str(path), {**base, **kw}, "branch", s1.key, s1.meta)
                    index[(case, seed, version, label)] = st
                    (later if label == "fusion-learned" else steps).append(st)
        steps += repair + later
    if args.models is not None:  # a subset; fusion-sum stays (the reference and the margo rows' parent)
        steps = [s for s in steps if s.label in {"fusion-sum", *args.models}]
    return steps, index


def recall_rows(args: argparse.Namespace, res: dict, index: dict) -> dict:
    """case -> model -> {clean, corrupt, lost: [per seed]} (test Recall@20)."""
    out: dict[str, dict] = {}
    for case in args.train_cases:
        for model in MODELS:
            row = {"clean": [], "corrupt": [], "lost": [], "seeds": [], "stage2_kept": [], "valid_corrupt": []}
            for seed in args.train_seeds:
                r = {v: res.get(index[(case, seed, v, model)].key) for v in ("clean", "corrupt")}
                if r["clean"] and r["corrupt"]:
                    c, k = r["clean"]["test"]["recall@20"], r["corrupt"]["test"]["recall@20"]
                    # BestState keeps stage II only when it beat stage I on validation
                    st = r["corrupt"]["stages"]
                    kept = len(st) > 1 and st[-1]["best_valid_r20"] >= st[0]["best_valid_r20"]
                    for key, v in (("clean", c), ("corrupt", k), ("lost", c - k), ("seeds", seed),
                                   ("stage2_kept", kept), ("valid_corrupt", r["corrupt"]["valid"]["recall@20"])):
                        row[key].append(v)
            out.setdefault(case, {})[model] = row
    return out


# -- report -------------------------------------------------------------------------------------
def _ms(values: list[float], digits: int = 3) -> str:
    m, s = H.mean_std(values)
    return "–" if np.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f} (n={len(values)})"


def report(args: argparse.Namespace, det: dict, rec: dict, info: dict, wall: float, old: dict) -> tuple[dict, str]:
    """``old``: the stored report whose training rows (recall, learned weights) a detection-only
    run keeps (their runs' workdir may be gone); empty when this run trains."""
    src = old.get("training_rows_from", old)  # the run that trained (a kept report keeps it)
    rec, tr = (old.get("recall20", {}), src["args"]) if old else (rec, vars(args))
    machine = src.get("machine", {})
    kept = H.template(NAME, "kept", date=machine.get("date"), command=machine.get("command")) + "\n"
    md = [H.template(NAME, "intro", machine=H.machine_md(info), kept=kept if old else "",
                     quick=H.template(NAME, "quick") + "\n" if args.quick else "", seeds=list(args.seeds),
                     train_seeds=list(tr["train_seeds"]), prior=PRIOR, epochs=tr["epochs"],
                     patience=tr["patience"], train_cases=list(tr["train_cases"]),
                     repair=", ".join(f"{n} (repair_threshold {kw['repair_threshold']})" for n, kw in REPAIR.items()))]
    models, weights = ("fusion-learned", "margo", *GUIDED), ("weights", "last-epoch weights")
    scorers = ["score", "audit", *SIGNALS, *(f"{m} {t}" for m in models for t in weights)]
    rows, by_n, by_sim, heads, js = [], [], [], {}, {}
    for case, by_seed in det.items():
        js[case] = {}
        for sc in scorers:
            aucs, precs = ([r[sc][k] for r in by_seed.values() if sc in r] for k in ("auc", "precision"))
            js[case][sc] = {"auc": aucs, "precision": precs, "seeds": [s for s, r in by_seed.items() if sc in r]}
            if not aucs and old.get("detection", {}).get(case, {}).get(sc, {}).get("auc"):  # kept row
                js[case][sc] = o = old["detection"][case][sc]
                aucs, precs = o["auc"], o["precision"]
            rows.append([case, sc, _ms(aucs), _ms(precs)])
        js[case]["self_auc_on_injected"] = {s: r["_self_auc"] for s, r in by_seed.items()}
        buckets = heads.setdefault("n", list(next(iter(by_seed.values()))["_by_interactions"]))
        by_n += [[case, sc, *(_ms([r["_by_interactions"][b][sc] for r in by_seed.values()]) for b in buckets)]
                 for sc in ("score", "audit")]
        js[case]["auc_by_interactions"] = {s: r["_by_interactions"] for s, r in by_seed.items()}
        if sims := [r["_by_swap_similarity"] for r in by_seed.values() if "_by_swap_similarity" in r]:
            by_sim.append([case, *(f"{_ms([x[b]['auc'] for x in sims])}, "
                                   f"{np.mean([x[b]['swaps'] for x in sims]):.0f} swaps" for b in sims[0])])
            js[case]["auc_by_swap_similarity"] = sims
            heads.setdefault("sim", list(sims[0]))
    md.append(H.md_table(["case", "scorer", "ROC-AUC", "precision@#corrupted"], rows) + "\n")
    if by_n:
        md += ["ROC-AUC by the item's training interactions:\n",
               H.md_table(["case", "scorer", *(f"{h} interactions" for h in heads["n"])], by_n) + "\n"]
    if by_sim:
        md += [H.template(NAME, "swaps"),
               H.md_table(["case", *(f"cosine {h}" for h in heads["sim"])], by_sim) + "\n"]
    md += [H.template(NAME, "legend", signals=" / ".join(f"`{x}`" for x in SIGNALS)),
           H.template(NAME, "reference"),
           "## Recall@20 on clean and corrupted data (test)\n"]
    rows = [[case, model, *(_ms(r[k], 4) for k in ("clean", "corrupt", "lost")),
             f"{sum(r['stage2_kept'])}/{len(r['stage2_kept'])}" if model.startswith("margo") else "–"]
            for case, by_model in rec.items() for model, r in by_model.items()]
    heads = ["case", "model", "clean", "corrupted", "lost to corruption", "stage II kept (corrupted)"]
    md += [H.md_table(heads, rows) + "\n", "## Targets\n", *_targets(det, rec),
           f"\nWall time of this invocation: {wall / 60:.1f} min{' (report only)' if args.report_only else ''}.\n"]
    data = {"machine": info, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "detection": js, "recall20": rec, "prior": PRIOR, "epochs": tr["epochs"], "patience": tr["patience"],
            **({"training_rows_from": {k: src[k] for k in ("machine", "args")}} if old else {})}
    return data, "\n".join(md)


def selected_guided(rec: dict) -> dict[str, str]:
    """case -> the reliability-guided model (prior or repair) with the better validation
    Recall@20 on the corrupted data, over the seeds both finished (never test)."""
    out = {}
    for case, by_model in rec.items():
        names = [g for g in (*GUIDED, *REPAIR) if by_model[g]["seeds"]]
        if common := set.intersection(*(set(by_model[g]["seeds"]) for g in names)) if names else set():
            valid = {g: float(np.mean([by_model[g]["valid_corrupt"][by_model[g]["seeds"].index(sd)]
                                       for sd in common])) for g in names}
            out[case] = max(names, key=valid.__getitem__)
    return out


def _targets(det: dict, rec: dict) -> list[str]:
    out = []
    for case, by_seed in det.items():
        aucs, goal = [r["score"]["auc"] for r in by_seed.values()], C["target_auc"].get(case, 0.90)
        worst = float(np.min(aucs))
        line = (f"- {case}: score ROC-AUC {float(np.mean(aucs)):.3f} (worst seed {worst:.3f}) >= {goal}: "
                f"**{'holds' if worst >= goal else 'does not hold'}**")
        if worst < goal:  # is it sparsity? the AUC on the best-observed items says
            top = [r["_by_interactions"][f">={BUCKETS[-1][0]}"]["score"] for r in by_seed.values()]
            line += f" (items with >= {BUCKETS[-1][0]} training interactions: {np.mean(top):.3f}"
            if sims := [r["_by_swap_similarity"] for r in by_seed.values() if "_by_swap_similarity" in r]:
                low = next(iter(sims[0]))
                line += f"; swaps to content of cosine {low} to the own: {np.mean([x[low]['auc'] for x in sims]):.3f}"
            line += ")"
        out.append(line)
    chosen = selected_guided(rec)
    for (case, by_model), name in ((x, g) for x in rec.items() for g in (*GUIDED, *REPAIR)):
        fs, gd = by_model["fusion-sum"], by_model[name]
        tag = " [selected on validation]" if chosen.get(case) == name else ""
        if not fs["lost"] or not gd["lost"]:
            out.append(f"- {case}, {name}: recall targets not measured (runs missing)")
            continue
        if not (common := sorted(set(fs["seeds"]) & set(gd["seeds"]))):  # compare on the seeds both have
            out.append(f"- {case}, {name}: no seed with both runs yet")
            continue
        fs, gd = ({k: [r[k][r["seeds"].index(sd)] for sd in common]
                   for k in ("lost", "clean", "valid_corrupt")} for r in (fs, gd))
        lost_fs, lost_gd = float(np.mean(fs["lost"])), float(np.mean(gd["lost"]))
        half = "holds" if lost_gd <= 0.5 * lost_fs else "does not hold"
        if lost_fs <= 0:
            half = "not measurable (fusion-sum lost nothing)"
        (m_fs, s_fs), m_gd = H.mean_std(fs["clean"]), float(np.mean(gd["clean"]))
        clean_ok = "holds" if m_gd >= m_fs - s_fs else "does not hold"
        if len(fs["clean"]) < 2 and m_gd < m_fs:
            clean_ok = "not measurable: one seed, no std"
        out.append(H.template(NAME, "recall", case=case, name=name + tag, common=common, half=half,
                              ok=clean_ok, valid=np.mean(gd["valid_corrupt"]), lost_gd=lost_gd,
                              lost_fs=lost_fs, m_gd=m_gd, m_fs=m_fs, s_fs=s_fs))
    return out


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = H.parser(__doc__)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--seeds", nargs="+", type=int, default=C["seeds"], help="detection seeds")
    p.add_argument("--train-seeds", nargs="*", type=int, default=C["seeds"],
                   help="training seeds (none: detection only)")
    p.add_argument("--train-cases", nargs="*", default=C["train_cases"], choices=list(CASES),
                   help="cases the recall runs train on, in priority order within each seed")
    p.add_argument("--models", nargs="*", default=None, choices=list(MODELS),
                   help="train only these models beside fusion-sum (default: all; a row added later)")
    p.add_argument("--epochs", type=int, default=C["epochs"], help="max epochs per stage (%(default)s)")
    p.add_argument("--patience", type=int, default=C["patience"], help="early-stop patience (%(default)s)")
    args = H.parse_args(p, argv, cases=["mlsmall-text"], seeds=[0], train_seeds=[0], epochs=2,
                        train_cases=["mlsmall-text"])
    # numpy/BLAS in the workers (the score, the prior) on one thread like torch
    os.environ.update({v: os.environ.get(v, str(args.threads)) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")})
    info, t0 = H.machine_info(args.threads), time.perf_counter()
    log = H.make_logger(args.workdir / f"{NAME}.log")
    seeds = sorted(set(args.seeds) | set(args.train_seeds))
    cases = list(dict.fromkeys([*args.cases, *args.train_cases]))
    paths = {(c, s): corrupt_path(args, c, s, log) for s in seeds for c in cases}
    steps, index = plan_training(args, paths, log)
    det_paths = {k: v for k, v in paths.items() if k[1] in args.seeds and k[0] in args.cases}
    detection_rows(args, det_paths, {}, index, log)  # first (cheap); weights columns fill in after the runs
    res = H.run_or_load(steps, args, args.workdir / "runs", log)
    det, rec = detection_rows(args, det_paths, res, index, log), recall_rows(args, res, index)
    old = H.stored_report(args, NAME) if not args.train_seeds and (args.results / f"{NAME}.json").is_file() else {}
    data, md = report(args, det, rec, info, time.perf_counter() - t0, old)
    H.write_report(args.results, NAME, data, md, log=log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
