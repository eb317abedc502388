"""Training speed on the Amazon-Baby-shaped synthetic dataset (``import_synth`` defaults, 2 torch
threads): median s/epoch of each stage, one full evaluation and peak RSS, each in a fresh process
while every bench training slot is held (what each kind trains: bench/configs/train_speed.toml).
``threads``: a BPR epoch per thread setting, quiet and beside one busy loop per core (issue 17.4).

    .venv/bin/python -m bench.train_speed [--quick | --measure margo eval dragon --mmrec ../MMRec]
    .venv/bin/python -m bench.train_speed --measure threads [--epochs 6 --threads-data PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness as H
from bench import mmrec_dragon

NAME = "train_speed"
C = H.config(NAME)  # targets, MMRec's reference figures, what each measurement trains
TARGETS, REFERENCE, EPOCHS, QUICK_DATA = (C[k] for k in ("targets", "reference", "epochs", "quick_data"))
DRAGON_EPOCH_S = REFERENCE["DRAGON (MARGO's backbone)"][0]
KINDS = (*EPOCHS, "eval", "dragon")
FREEDOM_ROWS = {"margo-freedom": "FREEDOM-style backbone, content channels",
                "default": "the trainer's default model", "default-d128": "the default model at d 128"}
INVOCATION = time.strftime("%Y-%m-%dT%H:%M:%S")  # side by side = same invocation


# -- measurements (each in its own process, over any checkout's trainer) --------------------------------
def measure(kind: str, data_path: str, epochs: int, threads: int) -> dict[str, Any]:
    import torch
    torch.set_num_threads(threads)
    from trainer.config import TrainConfig
    from trainer.data import load_dataset
    out: dict[str, Any] = {"kind": kind, "threads": torch.get_num_threads(), "loadavg_start": H.loadavg()}
    t0, data = time.perf_counter(), load_dataset(data_path)
    out["load_s"] = time.perf_counter() - t0
    known = getattr(TrainConfig, "model_fields", None) or TrainConfig.__dataclass_fields__  # an older trainer lacks some
    # validation only after the last epoch of each stage (eval_every = epochs), never early stop
    fields = {**EPOCHS.get(kind, EPOCHS["margo"]), "epochs": epochs, "patience": 1000, "eval_every": epochs}
    cfg = H.train_config(**{k: v for k, v in fields.items() if k in known}, threads=threads, seed=0)
    out.update(_epochs(data, cfg) if kind in EPOCHS else _eval(data, cfg))
    return {**out, "peak_rss_mb": H.peak_rss_mb(), "loadavg_end": H.loadavg()}


def _epochs(data: Any, cfg: Any) -> dict[str, Any]:
    from trainer.sampling import TripletSampler
    from trainer.train import fit
    # process CPU seconds of every pass over the training pairs (the sampler's epoch generator,
    # which every trainer version has): unlike wall time, barely moved by other processes' load
    cpu, epoch = [], TripletSampler.epoch

    def timed_epoch(self: Any, *a: Any, **kw: Any) -> Any:
        t = time.process_time()
        yield from epoch(self, *a, **kw)
        cpu.append(time.process_time() - t)

    TripletSampler.epoch, t = timed_epoch, time.perf_counter()
    res = fit(data, cfg, progress=False)
    fit_s, n, stages = time.perf_counter() - t, 0, []
    for s in res.stages:
        stages.append({"stage": s.stage, "epoch_seconds": s.epoch_seconds, "median_s": float(np.median(s.epoch_seconds)),
                       "stage_seconds_incl_eval": s.seconds, "cpu_seconds": cpu[n : n + len(s.epoch_seconds)]})
        n += len(s.epoch_seconds)
    return {"fit_s": fit_s, "test_recall@20": res.test.get("recall@20"), "stages": stages,
            # graph building, one validation per stage (eval_every > epochs) and the test
            "outside_epochs_s": fit_s - sum(sum(s.epoch_seconds) for s in res.stages)}


def _eval(data: Any, cfg: Any) -> dict[str, Any]:
    import torch

    from trainer.models import build_model
    from trainer.train import evaluate_model
    model, times = build_model(cfg, data), []
    model.enable_weights(cfg.weight_init_std, torch.Generator().manual_seed(1))
    for split in ("valid", "valid", "test"):
        t = time.perf_counter()
        m = evaluate_model(model, data, split, cfg)
        times.append(time.perf_counter() - t)
    return {"eval_seconds": times, "median_s": float(np.median(times)), "users_evaluated": m["users"]}


def run_measure(kind: str, args: argparse.Namespace, data: Path, log: Any, tree: Path = H.REPO, tag: str = "") -> dict[str, Any]:
    """One measurement in a fresh process: ``python -P`` with ``tree``'s trainer and this bench
    package, or MMRec's DRAGON (bench/mmrec_dragon.py)."""
    out_file, t = args.workdir / f"{NAME}_{kind}{tag}.json", time.perf_counter()
    cmd = [sys.executable, "-P", "-m", "bench.train_speed", "--_measure", kind, "--_data", str(data),
           "--_out", str(out_file), "--threads", str(args.threads), "--epochs", str(args.epochs)]
    # OpenMP threads wait passively (the trainer's own default since 9d0dad9; older trees get it too)
    env = H.tree_env(tree, OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="PASSIVE")
    try:
        if kind == "dragon":
            deps = args.mmrec_deps or args.workdir / "mmrec-deps"
            r = mmrec_dragon.run(args.mmrec, data, deps, args.workdir, args.epochs, args.threads, log)
        else:
            subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t
            r = {**json.loads(out_file.read_text()), "process_wall_s": wall, "tree": str(tree)}
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        err = getattr(exc, "stderr", None) or str(exc)
        log(f"[bench] {kind}{tag} FAILED:\n{err[-3000:]}")
        return {"kind": kind, "error": err[-2000:]}
    r.update(invocation=INVOCATION, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    H.atomic_write_json(out_file, r)
    log(f"[bench] {kind}{tag}: " + json.dumps(r)[:600])
    return r


def ensure_data(args: argparse.Namespace, tree: Path) -> Path:
    """The synthetic dataset, written by ``tree``'s importer (with ``--baseline``: the baseline's format)."""
    name, kw = ("synth_quick", QUICK_DATA) if args.quick else ("synth_baby", {})
    out = args.workdir / "data" / (name.replace("_", "-") + ("" if tree == H.REPO else "-baseline"))
    if not (out / "stats.json").is_file():
        code = f"from bench import harness as H; H.ensure_dataset({str(out)!r}, 'import_synth', seed=0, name={name!r}, **{kw!r})"
        subprocess.run([sys.executable, "-P", "-c", code], cwd=tree, env=H.tree_env(tree), check=True)
    return out


# -- thread settings under a competing load (issue 17.4): threads.{json,md} ------------------------------


def bpr_epochs(data: str, threads: str, epochs: int) -> dict[str, Any]:
    """Train BPR (one validation at the end): seconds of the epochs after the first. ``auto``
    imports the trainer first, as ``margo train`` does (its OpenMP wait policy applies); the others
    import torch first (the wait policy is read when torch loads: a fresh process per setting)."""
    if threads == "auto":
        import trainer  # noqa: F401
    import torch

    from trainer.data.dataset import load_dataset
    from trainer.train import fit
    # "None": torch's own default count (one per core), pinned so the trainer keeps it
    t = torch.get_num_threads() if threads == "None" else None if threads == "auto" else int(threads)
    cfg = H.train_config(model="bpr", epochs=epochs, eval_every=epochs, threads=t, reg_weight=0.1)
    r = fit(load_dataset(data), cfg, progress=False)
    return {"epoch_s": r.stages[0].epoch_seconds[1:], "torch_threads": torch.get_num_threads()}


def _busy(stop: float) -> None:
    """One core of competing load: spin on the clock until ``stop`` (the point is the busy core)."""
    while time.time() < stop:
        continue


def bpr_setting(args: argparse.Namespace, data: Path, threads: str, env: dict[str, str], epochs: int,
                busy: int) -> dict[str, Any]:
    """One setting in a fresh process, beside ``busy`` busy-loop processes."""
    out_file = args.workdir / f"{NAME}_bpr.json"
    cmd = [sys.executable, "-m", "bench.train_speed", "--_measure", f"bpr:{threads}", "--_data", str(data),
           "--_out", str(out_file), "--epochs", str(epochs)]
    procs = [mp.Process(target=_busy, args=(time.time() + 600,)) for _ in range(busy)]
    for pr in procs:
        pr.start()
    try:
        t0 = time.perf_counter()
        subprocess.run(cmd, env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env,
                       cwd=H.REPO, capture_output=True, text=True, check=True)
    finally:
        for pr in procs:
            pr.terminate()
            pr.join()
    res = json.loads(out_file.read_text())
    return {**res, "median_epoch_s": statistics.median(res["epoch_s"]), "wall_s": time.perf_counter() - t0,
            "loadavg": H.loadavg()}


def threads_run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    """Every setting quiet, then beside one busy loop per core, back to back: only the ratio means something."""
    data, epochs = ensure_data(args, H.REPO) if args.quick else args.threads_data, max(2, args.epochs)
    out = {"machine": H.machine_info(None), "cores": (cores := os.cpu_count() or 1), "data": data.name,
           "epochs": epochs, "settings": {}}
    for label, setting in C["threads"].items():
        quiet, loaded = (bpr_setting(args, data, epochs=epochs, busy=busy, **setting) for busy in (0, cores))
        out["settings"][label] = s = {"env": setting["env"], "quiet": quiet, "busy": loaded,
                                      "ratio": loaded["median_epoch_s"] / quiet["median_epoch_s"]}
        log(f"[threads] {label}: busy / quiet {s['ratio']:.2f}")
    return out


def threads_markdown(data: dict[str, Any]) -> str:
    rows = [[label, s["quiet"]["torch_threads"],
             *(f"{s[k]['median_epoch_s']:.3f}" for k in ("quiet", "busy")), f"{s['ratio']:.1f}x",
             f"{s['quiet']['loadavg'][0]:.1f} / {s['busy']['loadavg'][0]:.1f}"] for label, s in data["settings"].items()]
    table = H.md_table(["setting", "torch threads", "s/epoch", "s/epoch busy", "busy / quiet", "load 1m"], rows)
    return H.template("threads", "report", d=data, table=table, machine=H.machine_md(data["machine"]))


# -- report -------------------------------------------------------------------------------------------
def _f(x: float | None) -> str:  # seconds, or a dash for a missing measurement
    return "–" if x is None or x != x else f"{x:.2f}"


def _gb(r: dict) -> str:
    return f"{r['peak_rss_mb'] / 1024:.2f} GB" if r.get("peak_rss_mb") else ""


def _medians(r: dict) -> dict[str, float]:  # stage -> median s/epoch
    return {s["stage"]: s["median_s"] for s in r.get("stages", [])}


def _rounded(seconds: list[float], digits: int = 1) -> str:
    return str([round(x, digits) for x in seconds])


def report(args: argparse.Namespace, info: dict, res: dict[str, dict], data: Path, loads: list, t_wall: float) -> str:
    m, ev, dr = (res.get(k, {}) for k in ("margo", "eval", "dragon"))
    st = {s["stage"]: s for s in m.get("stages", [])}
    s1, s2 = (_medians(m).get(k, float("nan")) for k in ("I", "II"))
    e_s, worst = ev.get("median_s", float("nan")), max(s1, s2)
    rss = max((r.get("peak_rss_mb") or 0 for k, r in res.items() if k != "dragon"), default=0) / 1024
    n_train = int(json.loads((data / "stats.json").read_text())["split"]["train"])
    ok = lambda x, lim: f"< {lim:.0f} s: " + ("meets" if x < lim else "MISSES")  # noqa: E731
    ep = TARGETS["epoch_s"]
    rows = [["margo stage I (= a fusion-sum epoch: same model, same loss)", _f(s1), "", _gb(m), ok(s1, ep)],
            ["margo stage II", _f(s2), "", "", ok(s2, ep)],
            ["full evaluation (margo)", "", _f(e_s), _gb(ev), ok(e_s, TARGETS["eval_s"])]]
    rows += [[f"{kind} stage {k} ({what})", _f(v), "", _gb(res[kind]) if k == "I" else "",
              ok(v, TARGETS["freedom_epoch_s"])]
             for kind, what in FREEDOM_ROWS.items() for k, v in _medians(res.get(kind, {})).items()]
    rows += [[f"{k} (context)", _f(res[k]["stages"][0]["median_s"]), "", _gb(res[k]), ""]
             for k in ("fusion-sum", "lightgcn") if res.get(k, {}).get("stages")]
    floor = {"floor": H.template(NAME, "floor", floor_s=C["floor_s"]), "floor_x": worst / C["floor_s"],
             "dragon_s": DRAGON_EPOCH_S}
    if dr.get("median_s"):
        table = H.md_table(["model", "s / epoch (median)", "per-epoch seconds", "evaluation s", "peak RSS"], [
            ["ours: margo stage I / II", f"{_f(s1)} / {_f(s2)}",
             " / ".join(_rounded(v["epoch_seconds"]) for v in st.values()), _f(e_s), _gb(m)],
            ["MMRec DRAGON (lr 1e-3, reg 1e-3, seed 999)", _f(dr["median_s"]), _rounded(dr["epoch_seconds"]),
             _f(dr.get("eval_median_s")), _gb(dr)]])
        same = dr.get("invocation") == m.get("invocation")
        how = f"side by side in one invocation ({m['invocation']})" if same else "in separate invocations"
        dragon = H.template(NAME, "dragon", **floor, ratio=dr["median_s"] / worst, threads=args.threads,
                            table=table, how=how)
    else:
        dragon = H.template(NAME, "no-dragon", **floor, s1=s1 / DRAGON_EPOCH_S, s2=s2 / DRAGON_EPOCH_S,
                            inv=DRAGON_EPOCH_S / worst)
    per_epoch = "; ".join(f"stage {k}: {_rounded(v['epoch_seconds'], 2)}" for k, v in st.items())
    machine = H.machine_md(info, f"; load average before/after the measurements: {loads[0]} / {loads[1]}")
    return H.template(
        NAME, "report", machine=machine, n_train=n_train, batches=-(-n_train // 2048), threads=args.threads,
        quick=H.template(NAME, "quick", data=QUICK_DATA, epochs=args.epochs) if args.quick else "",
        epochs=args.epochs, rss=rss, rss_target=TARGETS["rss_gb"], wall=t_wall / 60, dragon=dragon,
        rss_ok="meets" if rss < TARGETS["rss_gb"] else "MISSES",
        ours=H.md_table(["measurement", "s / epoch (median)", "full evaluation s", "peak RSS", "target"],
                        rows),
        reference=H.md_table(["model (MMRec)", "s / epoch", "full evaluation s", "peak RSS GB"],
                             [[k, f"{e:.1f}", f"{v:.1f}", f"{g:.2f}"] for k, (e, v, g) in REFERENCE.items()]),
        per_epoch=H.template(NAME, "per-epoch", outside=m.get("outside_epochs_s", float("nan")),
                             stages=per_epoch) if st else "",
        measurements=H.md_table(["measurement", "invocation", "finished", "torch threads",
                                 "load avg at start -> end (1 min)", "peak RSS"],
                                [[k, v.get("invocation", "?"), v.get("finished", "?"), v.get("threads"),
                                  f"{v['loadavg_start'][0]:.2f} -> {v['loadavg_end'][0]:.2f}", _gb(v)]
                                 for k, v in res.items() if "loadavg_start" in v]))


def baseline_report(args: argparse.Namespace, info: dict, rounds: list[dict[str, dict]], commits: dict[str, str],
                    kind: str = "margo") -> str:
    med = H.medians(rounds, lambda r: {s: _medians(r).get(s, np.nan) for s in ("I", "II")})
    rows, cpus, spread = [], {}, {}
    for tag in ("baseline", "this tree"):
        for stage in ("I", "II"):
            st = [s for r in rounds for s in r[tag].get("stages", []) if s["stage"] == stage]
            epochs = [x for s in st for x in s["epoch_seconds"]]
            spread[tag, stage] = (min(epochs, default=np.nan), max(epochs, default=np.nan))
            cpus[tag, stage] = float(np.median([x for s in st for x in s.get("cpu_seconds", [])] or [np.nan]))
            per_round = ", ".join(f"{_medians(r[tag]).get(stage, np.nan):.2f}" for r in rounds)
            rows.append([tag, stage, per_round, f"{med[tag][stage]:.2f}",
                         "{:.2f}-{:.2f}".format(*spread[tag, stage]), f"{cpus[tag, stage]:.2f}"])
    this, base = ({s: spread[t, s] for s in ("I", "II")} for t in ("this tree", "baseline"))
    return H.template(
        NAME, "baseline", machine=H.machine_md(info), baseline=args.baseline, commits=commits, repo=H.REPO, kind=kind,
        epochs=args.epochs, threads=args.threads, rounds=args.rounds,
        data="small data " + str(QUICK_DATA) if args.quick else "synth-baby (import_synth defaults)",
        table=H.md_table(["tree", "stage", "median s/epoch per round", "median", "range over all epochs",
                          "median CPU s/epoch"], rows),
        ratio={s: med["this tree"][s] / med["baseline"][s] for s in ("I", "II")},
        cpu={s: cpus["this tree", s] / cpus["baseline", s] for s in ("I", "II")},
        reference=", ".join(f"{k} {e:.1f}" for k, (e, _, _) in REFERENCE.items()),
        overlap={s: "yes" if this[s][0] <= base[s][1] and base[s][0] <= this[s][1] else "no"
                 for s in ("I", "II")})


def main(argv: list[str] | None = None) -> int:
    p = H.parser(__doc__, ("--epochs", 4, "epochs per stage to time (default 4)"),
                 ("--rounds", 2, "alternating rounds with --baseline (default 2)"),
                 ("--threads-data", H.DATA / "amazon-scientific-mmrec", "data set of `threads` (default "
                  "amazon-scientific-mmrec; --quick: the small synthetic set)"), jobs=1)
    p.set_defaults(threads=2)
    p.add_argument("--measure", nargs="+", default=["margo", "eval", "lightgcn"], choices=[*KINDS, "threads"],
                   help="what to measure (default margo eval lightgcn; dragon needs --mmrec; the others are kept "
                   "from WORKDIR; threads: a report of its own)")
    p.add_argument("--mmrec", type=Path, help="an MMRec checkout (github.com/enoche/MMRec) for `dragon`")
    p.add_argument("--mmrec-deps", type=Path, help="where MMRec's extra packages go (default WORKDIR/mmrec-deps)")
    p.add_argument("--baseline", help="another checkout or a commit: its epochs and ours, alternately, of the first "
                   "--measure kind that trains (default margo)")
    for hidden in ("--_measure", "--_data", "--_out"):  # a measurement's own process
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = H.parse_args(p, argv, epochs=1)
    if args.quick and args.measure == p.get_default("measure"):  # every code path, few processes
        args.measure = ["margo", "eval"]
    if args._measure:  # the child process of one measurement; the parent reads the file once it exits
        kind, _, threads = args._measure.partition(":")
        out = bpr_epochs(args._data, threads, args.epochs) if kind == "bpr" else measure(
            kind, args._data, args.epochs, args.threads)
        Path(args._out).write_text(H.dumps(out))
        return 0
    if "dragon" in args.measure and not args.report_only and args.mmrec is None:
        p.error("--measure dragon needs --mmrec PATH (an MMRec checkout)")
    info, log, t0 = H.machine_info(args.threads), H.make_logger(args.workdir / f"{NAME}.log"), time.perf_counter()
    if "threads" in args.measure:
        threads = H.stored_report(args, "threads") if args.report_only else threads_run(args, log)
        H.write_report(args.results, "threads", threads, threads_markdown(threads), log=log)
        if args.measure == ["threads"]:
            return 0
    trees, commits = H.versus(args.baseline, args.workdir) if args.baseline else ({"this tree": H.REPO}, {})
    data = ensure_data(args, trees.get("baseline", H.REPO))
    prev = {k: args.workdir / f"{NAME}_{k}.json" for k in KINDS if args.report_only or k not in args.measure}
    res = {k: json.loads(f.read_text()) for k, f in prev.items() if f.is_file() and not args.quick}  # earlier runs
    with H.hold_slots(args.workdir / "slots", args.max_train, log=log):
        loads = [H.loadavg()]
        if args.baseline:
            kind = next((k for k in args.measure if k in EPOCHS), "margo")
            rounds: list[dict[str, dict]] = [{} for _ in range(args.rounds)]
            for i, tag in H.abba(args.rounds, list(trees)):  # neither always goes first
                rounds[i][tag] = run_measure(kind, args, data, log, trees[tag], f"-{tag.replace(' ', '-')}-{i}")
            stored = {"machine": info, "baseline": args.baseline, "commits": commits, "args": vars(args),
                      "kind": kind, "rounds": rounds, "loadavg_end": H.loadavg()}
            name = f"{NAME}_vs_baseline" + ("" if kind == "margo" else f"_{kind.replace('-', '_')}")
            H.write_report(args.results, name, stored, baseline_report(args, info, rounds, commits, kind))
            return 0
        for kind in [] if args.report_only else args.measure:
            res[kind] = run_measure(kind, args, data, log)
        loads.append(H.loadavg())
    t_wall = time.perf_counter() - t0
    data_json = {"machine": info, "args": vars(args), "loadavg_before": loads[0], "loadavg_after": loads[1],
                 "targets": TARGETS, "reference_mmrec": REFERENCE, "results": res, "wall_seconds": round(t_wall, 1)}
    H.write_report(args.results, NAME, data_json, report(args, info, res, data, loads, t_wall))
    log(f"[bench] wrote {args.results / NAME}.json/.md in {t_wall:.0f}s")
    return 1 if any("error" in res.get(k, {}) for k in args.measure) else 0


if __name__ == "__main__":
    raise SystemExit(main())
