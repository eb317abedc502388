"""Training speed on the Amazon-Baby-shaped synthetic dataset (2 torch threads, this CPU).

Data: ``import_synth`` defaults (19,445 users, 7,050 items, 160,792 interactions, image 4096-d +
text 384-d), generated once into WORKDIR/data/synth-baby (~10 s).

Each measurement runs in a fresh subprocess, so its peak RSS (getrusage ru_maxrss) is its own:
  margo       two-stage margo, 4 epochs per stage, validation only after epoch 4 (outside the
              epoch timer): median s/epoch over epochs 1-4 of stage I and of stage II
  eval        one full evaluation (all users x all items, training items masked,
              trainer.train.evaluate_model), median of 3, on a freshly built margo model
  fusion-sum, lightgcn   4 epochs each, for context
  profile     (when a stage epoch exceeds the 20 s bar) where a training batch spends its time
  dragon      MMRec's own DRAGON (MARGO's backbone) on the same data and threads, from an MMRec
              checkout (--mmrec PATH; bench/mmrec_dragon.py): the side-by-side ratio

While measuring, the script holds every benchmark training slot (WORKDIR/slots), so the other
bench scripts start no new training run; other users' load is recorded (os.getloadavg).

    .venv/bin/python bench/train_speed.py --quick   # 1 epoch per stage, smoke check
    .venv/bin/python bench/train_speed.py           # ~5-10 min
    .venv/bin/python bench/train_speed.py --measure margo eval dragon --mmrec ../MMRec  # +6 min
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

NAME = "train_speed"
TARGETS = {"epoch_s": 20.0, "eval_s": 10.0, "rss_gb": 6.0}
# REFERENCE-NUMBERS.md, MMRec on this machine kind, 2 threads: (s/epoch, eval s, peak RSS GB)
REFERENCE = {
    "LightGCN": (4.1, 2.3, 0.85),
    "FREEDOM": (15.0, 2.3, 1.37),
    "DRAGON (MARGO's backbone)": (69.0, 2.1, 1.68),
}
DRAGON_EPOCH_S = 69.0
# names the invocation that took a measurement: side by side = same invocation
INVOCATION = time.strftime("%Y-%m-%dT%H:%M:%S")
FLOOR_S = (
    10.0  # REFERENCE-NUMBERS.md: ~1.7 TFLOP/epoch of the 4096->256 projection at ~89 GFLOP/s/core
)


# -- measurements (each in its own process) --------------------------------------------------------
def measure(kind: str, data_path: str, epochs: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from trainer.config import TrainConfig
    from trainer.data import load_dataset
    from trainer.models import build_model
    from trainer.train import evaluate_model, fit

    out: dict[str, Any] = {
        "kind": kind,
        "threads": torch.get_num_threads(),
        "loadavg_start": os.getloadavg(),
    }
    t0 = time.perf_counter()
    data = load_dataset(data_path)
    out["load_s"] = time.perf_counter() - t0
    if kind in ("margo", "fusion-sum", "lightgcn", "fusion-sum-1t"):
        # process CPU seconds (user + sys) at the end of every epoch: a contention-robust view
        # (with 1 thread, CPU s/epoch ~ the wall time the epoch would take on a quiet core)
        cpu_marks: list[tuple[str, int, float]] = []

        def on_epoch(rep: Any) -> None:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            cpu_marks.append((rep.stage, rep.epoch, ru.ru_utime + ru.ru_stime))

        model_name = "fusion-sum" if kind == "fusion-sum-1t" else kind
        cfg = TrainConfig(
            model=model_name, epochs=epochs, patience=1000, eval_every=1000, threads=threads, seed=0
        )
        t = time.perf_counter()
        res = fit(data, cfg, progress=False, callback=on_epoch)
        # epoch k's CPU = mark k - mark k-1 within a stage; the last epoch of a stage also ran
        # a validation, and the first has no start mark, so only the epochs between are clean
        out["cpu_seconds_per_epoch"] = [
            {"stage": b[0], "epoch": b[1], "cpu_s": b[2] - a[2]}
            for a, b in zip(cpu_marks, cpu_marks[1:], strict=False)
            if a[0] == b[0] and b[1] < epochs
        ]
        out["fit_s"] = time.perf_counter() - t
        out["stages"] = [
            {
                "stage": s.stage,
                "epoch_seconds": s.epoch_seconds,
                "median_s": float(np.median(s.epoch_seconds)),
                "stage_seconds_incl_eval": s.seconds,
            }
            for s in res.stages
        ]
        # what fit spent outside the epochs: graph building, the validation after the last
        # epoch of each stage (eval_every > epochs) and the final test evaluation
        out["outside_epochs_s"] = out["fit_s"] - sum(sum(s.epoch_seconds) for s in res.stages)
        out["test_recall@20"] = res.test.get("recall@20")
    elif kind == "eval":
        cfg = TrainConfig(model="margo", threads=threads, seed=0)
        t = time.perf_counter()
        model = build_model(cfg, data)
        out["build_s"] = time.perf_counter() - t
        model.enable_weights(cfg.weight_init_std, torch.Generator().manual_seed(1))
        times = []
        for split in ("valid", "valid", "test"):
            t = time.perf_counter()
            m = evaluate_model(model, data, split, cfg)
            times.append(time.perf_counter() - t)
        out["eval_seconds"] = times
        out["median_s"] = float(np.median(times))
        out["users_evaluated"] = m["users"]
        # the same split by part: forward pass (embeddings) vs ranking
        t = time.perf_counter()
        with torch.no_grad():
            model.eval()
            model.embeddings()
        out["forward_s"] = time.perf_counter() - t
    elif kind == "profile":
        out.update(_profile(data, threads))
    elif kind == "gemm":
        out.update(_gemm(data))
    out["peak_rss_mb"] = C.peak_rss_mb()
    out["loadavg_end"] = os.getloadavg()
    return out


def _gemm(data: Any, reps: int = 3) -> dict[str, Any]:
    """Achieved fp32 GEMM rate now, on the shapes of the image projection (1 thread)."""
    import torch

    torch.set_num_threads(1)
    f = torch.from_numpy(np.ascontiguousarray(data.features["image"], np.float32))  # [n_i, 4096]
    w = torch.randn(256, f.shape[1])
    g = torch.randn(f.shape[0], 256)
    gflop = 2 * f.shape[0] * f.shape[1] * 256 / 1e9
    out = {"gflop_per_product": gflop}
    for name, fn in (
        ("forward F @ W1^T", lambda: f @ w.T),
        ("weight grad G^T @ F", lambda: g.T @ f),
    ):
        fn()
        ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(reps):
            fn()
        ru1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / reps
        out[name] = {
            "wall_s": (t1 - t0) / reps,
            "cpu_s": cpu,
            "gflops_wall": gflop * reps / (t1 - t0),
            "gflops_per_cpu_s": gflop / max(cpu, 1e-9),
        }
    return out


def _profile(data: Any, threads: int, n_batches: int = 3) -> dict[str, Any]:
    """Where a stage-I margo training batch spends its time: manual split + torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from trainer.config import TrainConfig
    from trainer.models import build_model
    from trainer.sampling import TripletSampler
    from trainer.train import batch_loss

    cfg = TrainConfig(model="margo", threads=threads, seed=0)
    model = build_model(cfg, data)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    batches = list(
        zip(
            range(n_batches + 1),
            TripletSampler(data.train, data.n_items, 0).epoch(cfg.batch_size),
            strict=False,
        )
    )
    split = {
        "item_projection_fwd": [],
        "embeddings_fwd": [],
        "loss_fwd": [],
        "backward": [],
        "adam_step": [],
    }

    def step(u, i, k, timed: bool) -> None:
        ut, it, kt = (torch.from_numpy(a) for a in (u, i, k))
        t0 = time.perf_counter()
        with torch.no_grad():
            model.item_nodes()
        t1 = time.perf_counter()
        with torch.no_grad():
            model.embeddings()
        t2 = time.perf_counter()
        loss, _ = batch_loss(model, ut, it, kt, cfg, 0.0)
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        opt.step()
        t5 = time.perf_counter()
        if timed:
            for key, v in zip(split, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                split[key].append(v)

    _, (u, i, k) = batches[0]
    step(u, i, k, timed=False)  # warm-up
    for _, (u, i, k) in batches[1:]:
        step(u, i, k, timed=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _, (u, i, k) = batches[1]
        ut, it, kt = (torch.from_numpy(a) for a in (u, i, k))
        loss, _ = batch_loss(model, ut, it, kt, cfg, 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    top = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    n_b = -(-len(data.train) // cfg.batch_size)
    return {
        "batches_per_epoch": n_b,
        "median_split_s": {k: float(np.median(v)) for k, v in split.items()},
        "note": "embeddings_fwd includes item_projection_fwd; loss_fwd recomputes embeddings with autograd",
        "profiler_table": table,
        "profiler_top": [
            {
                "op": e.key,
                "self_cpu_ms": e.self_cpu_time_total / 1e3,
                "share": e.self_cpu_time_total / max(total, 1),
                "calls": e.count,
            }
            for e in top
        ],
    }


# -- orchestration -----------------------------------------------------------------------------------
@contextlib.contextmanager
def hold_all_slots(slots_dir: Path, n: int, log) -> Any:
    """Block until every benchmark training slot is ours (other bench scripts pause between runs)."""
    slots_dir.mkdir(parents=True, exist_ok=True)
    files = []
    t = time.perf_counter()
    try:
        for i in range(n):
            f = open(slots_dir / f"slot{i}.lock", "w")  # noqa: SIM115
            fcntl.flock(f, fcntl.LOCK_EX)
            files.append(f)
        log(f"[bench] holding all {n} training slots (waited {time.perf_counter() - t:.0f}s)")
        yield
    finally:
        for f in files:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()


def run_dragon(args: argparse.Namespace, data_path: Path, log) -> dict[str, Any]:
    """MMRec's own DRAGON on the same data, same threads (bench/mmrec_dragon.py)."""
    import mmrec_dragon

    out_file = args.workdir / f"{NAME}_dragon.json"
    deps = args.mmrec_deps or args.workdir / "mmrec-deps"
    try:
        mmrec_dragon.ensure_deps(deps, log)
        src = mmrec_dragon.prepare(args.mmrec, data_path, args.workdir, log)
        r = mmrec_dragon.run(src, deps, args.epochs, args.threads, log)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        log(f"[bench] dragon FAILED: {exc}")
        return {"kind": "dragon", "error": str(exc)[-2000:]}
    r["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    r["invocation"] = INVOCATION
    C.atomic_write_json(out_file, r)
    return r


def run_measure(kind: str, args: argparse.Namespace, data_path: Path, log) -> dict[str, Any]:
    if kind == "dragon":
        return run_dragon(args, data_path, log)
    out_file = args.workdir / f"{NAME}_{kind}.json"
    cmd = [
        sys.executable,
        __file__,
        "--_measure",
        kind,
        "--_data",
        str(data_path),
        "--_out",
        str(out_file),
        "--threads",
        str(args.threads),
        "--epochs",
        str(args.epochs),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"[bench] {kind} FAILED:\n{proc.stderr[-3000:]}")
        return {"kind": kind, "error": proc.stderr[-2000:]}
    r = json.loads(out_file.read_text())
    r["process_wall_s"] = time.perf_counter() - t
    r["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    r["invocation"] = INVOCATION
    C.atomic_write_json(out_file, r)
    log(
        f"[bench] {kind}: "
        + json.dumps({k: v for k, v in r.items() if k not in ("profiler_table", "profiler_top")})[
            :600
        ]
    )
    return r


def ensure_data(args: argparse.Namespace, log) -> Path:
    path = args.workdir / "data" / "synth-baby"
    if not (path / "stats.json").is_file():
        from trainer.data import import_synth

        t = time.perf_counter()
        import_synth(path, seed=0, overwrite=True, progress=False, name="synth_baby")
        log(f"[bench] generated {path} in {time.perf_counter() - t:.1f}s")
    return path


def write_report(args, info, res: dict[str, dict], load_before, load_after, t_wall) -> None:
    m = res.get("margo", {})
    ev = res.get("eval", {})
    st = {s["stage"]: s for s in m.get("stages", [])}
    s1 = st.get("I", {}).get("median_s", float("nan"))
    s2 = st.get("II", {}).get("median_s", float("nan"))
    e_s = ev.get("median_s", float("nan"))
    ours = [r.get("peak_rss_mb") or 0 for k, r in res.items() if k != "dragon"]
    rss = max(ours, default=float("nan")) / 1024
    ok = lambda x, lim: "meets" if x < lim else "MISSES"  # noqa: E731
    md = [
        "# Training speed (`bench/train_speed.py`)\n",
        C.machine_md(
            info,
            extra=(f"; load average before/after the measurements: {load_before} / {load_after}"),
        ),
        "",
    ]
    if args.quick:
        md.append(f"**QUICK SMOKE RUN** ({args.epochs} epoch(s) per stage): not a measurement.\n")
    md.append(
        "Data: `import_synth` defaults (Amazon-Baby shape: 19,445 users, 7,050 items, 160,792 interactions, image "
        f"4096-d + text 384-d), {_n_train(args)} training pairs = {-(-_n_train(args) // 2048)} batches of 2048 per epoch. "
        f"torch threads: {args.threads}. Each measurement in a fresh process (peak RSS per process). "
        f"Median seconds over epochs 1-{args.epochs} of each stage; validation only after the last epoch, "
        "outside the epoch timer. One full evaluation = all users with validation items x all 7,050 items, "
        "training items masked (`trainer.train.evaluate_model`), median of 3.\n"
    )
    rows = [
        [
            "margo stage I (= a fusion-sum epoch: same model, same loss)",
            _f(s1),
            "",
            _gb(m),
            f"< {TARGETS['epoch_s']:.0f} s: {ok(s1, TARGETS['epoch_s'])}",
        ],
        [
            "margo stage II",
            _f(s2),
            "",
            "",
            f"< {TARGETS['epoch_s']:.0f} s: {ok(s2, TARGETS['epoch_s'])}",
        ],
        [
            "full evaluation (margo)",
            "",
            _f(e_s),
            _gb(ev),
            f"< {TARGETS['eval_s']:.0f} s: {ok(e_s, TARGETS['eval_s'])}",
        ],
    ]
    for k in ("fusion-sum", "lightgcn"):
        r = res.get(k, {})
        if r.get("stages"):
            rows.append([f"{k} (context)", _f(r["stages"][0]["median_s"]), "", _gb(r), ""])
    md.append("## Ours\n")
    md.append(
        C.md_table(
            ["measurement", "s / epoch (median)", "full evaluation s", "peak RSS", "target"], rows
        )
        + "\n"
    )
    md.append(
        f"Peak RSS over all our measurement processes: {rss:.2f} GB (target < {TARGETS['rss_gb']:.0f} GB: "
        f"{ok(rss, TARGETS['rss_gb'])}).\n"
    )
    worst = max(s1, s2)
    dr = res.get("dragon", {})
    if dr.get("median_s"):
        d_s = dr["median_s"]
        same_run = dr.get("invocation") is not None and dr.get("invocation") == m.get("invocation")
        md.append("## Side by side with MMRec's DRAGON (MARGO's backbone)\n")
        md.append(
            C.md_table(
                ["model", "s / epoch (median)", "per-epoch seconds", "evaluation s", "peak RSS"],
                [
                    [
                        "ours: margo stage I / II",
                        f"{_f(s1)} / {_f(s2)}",
                        " / ".join(
                            str([round(x, 1) for x in v["epoch_seconds"]]) for v in st.values()
                        ),
                        _f(e_s),
                        _gb(m),
                    ],
                    [
                        "MMRec DRAGON (lr 1e-3, reg 1e-3, seed 999)",
                        _f(d_s),
                        str([round(x, 1) for x in dr["epoch_seconds"]]),
                        _f(dr.get("eval_median_s") or float("nan")),
                        _gb(dr),
                    ],
                ],
            )
            + "\n"
        )
        md.append(
            f"DRAGON / ours = **{d_s / worst:.2f}x** (slower stage of ours), measured "
            + (
                f"side by side in one invocation ({m['invocation']})"
                if same_run
                else "in separate invocations"
            )
            + f", {args.threads} torch threads each, same data. REFERENCE-NUMBERS.md quotes "
            f"{DRAGON_EPOCH_S:.0f} s/epoch for DRAGON. MMRec's epoch time includes DRAGON's per-epoch "
            "user-graph resampling; its evaluation time is the validation pass alone (full ranking "
            "of all users). How DRAGON is run: bench/mmrec_dragon.py (an unmodified MMRec "
            "checkout, two run-time compatibility patches for current torch/numpy, documented "
            "there). Versus the "
            f"~{FLOOR_S:.0f} s/epoch GEMM floor of the 4096->256 projection: ours {worst / FLOOR_S:.1f}x.\n"
        )
    else:
        md.append(
            f"Ratio to DRAGON's {DRAGON_EPOCH_S:.0f} s/epoch (REFERENCE-NUMBERS.md, MMRec, measured "
            "earlier on this kind of machine, **not re-measured side by side here**; run with "
            f"`--measure margo dragon --mmrec PATH` for that): stage I {s1 / DRAGON_EPOCH_S:.2f}x, "
            f"stage II {s2 / DRAGON_EPOCH_S:.2f}x (DRAGON / ours = {DRAGON_EPOCH_S / worst:.2f}). "
            f"Versus the ~{FLOOR_S:.0f} s/epoch GEMM floor of the 4096->256 projection: "
            f"{worst / FLOOR_S:.1f}x.\n"
        )
    md.append("## Reference (MMRec, REFERENCE-NUMBERS.md, 2 CPU threads)\n")
    md.append(
        C.md_table(
            ["model (MMRec)", "s / epoch", "full evaluation s", "peak RSS GB"],
            [[k, f"{v[0]:.1f}", f"{v[1]:.1f}", f"{v[2]:.2f}"] for k, v in REFERENCE.items()],
        )
        + "\n"
    )
    one = res.get("fusion-sum-1t", {})
    if one.get("cpu_seconds_per_epoch"):
        c = [x["cpu_s"] for x in one["cpu_seconds_per_epoch"]]
        walls = [round(x, 1) for x in one["stages"][0]["epoch_seconds"]]
        md.append("## Contention-robust view: CPU seconds per epoch\n")
        md.append(
            f"fusion-sum (= margo stage I) with **1 torch thread**, process CPU time (user + sys) of the epochs "
            f"with clean start and end marks: {[round(x, 1) for x in c]} s (wall on the shared machine: {walls} s, "
            f"load {one['loadavg_start'][0]:.1f} -> {one['loadavg_end'][0]:.1f}). With one thread CPU time is about "
            f"what the epoch takes on a quiet core; the ideal 2-thread figure is about half: "
            f"**~{np.median(c) / 2:.0f} s/epoch** if the GEMMs parallelise perfectly (they dominate, see the profile).\n"
        )
    if "margo" in res and st:
        md.append(
            "Per-epoch seconds: "
            + "; ".join(
                f"stage {k}: {[round(x, 2) for x in v['epoch_seconds']]}" for k, v in st.items()
            )
            + f". Outside the epochs (graphs, one validation per stage, test): {m.get('outside_epochs_s', float('nan')):.1f} s.\n"
        )
    p = res.get("profile")
    if p and "median_split_s" in p:
        sp = p["median_split_s"]
        md.append("## Where a training batch goes (margo stage I, one batch of 2048)\n")
        md.append(
            C.md_table(["part", "seconds (median of 3)"], [[k, f"{v:.3f}"] for k, v in sp.items()])
            + "\n"
        )
        md.append(f"{p['batches_per_epoch']} batches per epoch. {p['note']}.\n")
        md.append("Top ops by self CPU time (torch.profiler, one batch):\n")
        md.append(
            C.md_table(
                ["op", "self CPU ms", "share", "calls"],
                [
                    [e["op"], f"{e['self_cpu_ms']:.1f}", f"{100 * e['share']:.1f}%", e["calls"]]
                    for e in p["profiler_top"]
                ],
            )
            + "\n"
        )
    gm = res.get("gemm", {})
    if gm.get("gflop_per_product"):
        fw, wg = gm["forward F @ W1^T"], gm["weight grad G^T @ F"]
        md.append("## Achieved GEMM rate on this shared machine\n")
        md.append(
            f"The image projection's two big products ({gm['gflop_per_product']:.1f} GFLOP each, 1 thread), measured "
            f"at load {gm['loadavg_start'][0]:.1f}: forward {fw['gflops_wall']:.1f} GFLOP/s wall "
            f"({fw['gflops_per_cpu_s']:.1f} per CPU-second), weight gradient {wg['gflops_wall']:.1f} GFLOP/s wall "
            f"({wg['gflops_per_cpu_s']:.1f} per CPU-second), against ~89 GFLOP/s per core quoted for a quiet machine in "
            "REFERENCE-NUMBERS.md. Other tenants' load slows even our CPU time (shared cores/caches), so the "
            "epoch figures above are upper bounds for a quiet machine.\n"
        )
    md.append("## Measurements (each a fresh process)\n")
    md.append(
        C.md_table(
            [
                "measurement",
                "invocation",
                "finished",
                "torch threads",
                "load avg at start -> end (1 min)",
                "peak RSS",
            ],
            [
                [
                    k,
                    v.get("invocation", "?"),
                    v.get("finished", "?"),
                    v.get("threads"),
                    f"{v['loadavg_start'][0]:.2f} -> {v['loadavg_end'][0]:.2f}",
                    _gb(v),
                ]
                for k, v in res.items()
                if "loadavg_start" in v
            ],
        )
        + "\n"
    )
    md.append(
        "The 2-thread measurements held every bench training slot, so none of our own benchmark "
        "training ran beside them; the load averages above show what else the machine ran.\n"
    )
    md.append(f"Wall time of this invocation: {t_wall / 60:.1f} min.\n")
    C.atomic_write_text(args.results / f"{NAME}.md", "\n".join(md))


def _n_train(args: argparse.Namespace) -> int:
    stats = json.loads((args.workdir / "data" / "synth-baby" / "stats.json").read_text())
    return int(stats["split"]["train"])


def _f(x: float) -> str:
    return "–" if x != x else f"{x:.2f}"


def _gb(r: dict) -> str:
    return f"{r['peak_rss_mb'] / 1024:.2f} GB" if r.get("peak_rss_mb") else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    C.add_common_args(p, jobs=1)
    p.set_defaults(threads=2)
    p.add_argument("--epochs", type=int, default=4, help="epochs per stage to time (default 4)")
    p.add_argument(
        "--measure",
        nargs="+",
        default=["margo", "eval", "lightgcn"],
        help="which of margo eval lightgcn fusion-sum fusion-sum-1t profile dragon (default margo "
        "eval lightgcn; dragon: MMRec's DRAGON, needs --mmrec; "
        "fusion-sum-1t: 1 thread, CPU seconds per epoch; earlier measurements not named are "
        "kept from WORKDIR; "
        "fusion-sum's epoch is margo's stage-I epoch; profile runs when a stage epoch "
        "exceeds 20 s, or name it)",
    )
    p.add_argument(
        "--slots-needed",
        type=int,
        default=None,
        help="benchmark training slots to hold while measuring (default all = --max-train; 1 is "
        "enough for the 1-thread fusion-sum-1t measurement)",
    )
    p.add_argument(
        "--report-only", action="store_true", help="rebuild the report from earlier measurements"
    )
    p.add_argument(
        "--mmrec",
        type=Path,
        default=None,
        help="an MMRec checkout (github.com/enoche/MMRec) for the `dragon` measurement: its own "
        "DRAGON timed on the same data, side by side",
    )
    p.add_argument(
        "--mmrec-deps",
        type=Path,
        default=None,
        help="where MMRec's extra Python packages are pip-installed (default WORKDIR/mmrec-deps)",
    )
    p.add_argument(
        "--no-hold", action="store_true", help="do not pause the other bench scripts' training"
    )
    p.add_argument("--_measure", help=argparse.SUPPRESS)
    p.add_argument("--_data", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    needs_mmrec = "dragon" in args.measure and not args.report_only and args._measure is None
    if needs_mmrec and args.mmrec is None:
        p.error("--measure dragon needs --mmrec PATH (an MMRec checkout)")
    previous: dict[str, dict] = {}  # measurements of earlier invocations not re-run now
    if args._measure:  # child process
        threads = 1 if args._measure in ("fusion-sum-1t", "gemm") else args.threads
        r = measure(args._measure, args._data, args.epochs, threads)
        C.atomic_write_json(Path(args._out), r)
        return 0
    if args.quick:
        args.epochs = 1
    kinds = (
        "margo",
        "eval",
        "lightgcn",
        "fusion-sum",
        "fusion-sum-1t",
        "profile",
        "gemm",
        "dragon",
    )
    for kind in kinds:
        prev = args.workdir / f"{NAME}_{kind}.json"
        if (args.report_only or kind not in args.measure) and prev.is_file() and not args.quick:
            previous[kind] = json.loads(prev.read_text())
    info = C.machine_info(args.threads)
    log = C.make_logger(args.workdir / f"{NAME}.log")
    t0 = time.perf_counter()
    data_path = ensure_data(args, log)
    n_hold = args.max_train if args.slots_needed is None else args.slots_needed
    hold = (
        contextlib.nullcontext()
        if args.no_hold
        else hold_all_slots(args.workdir / "slots", n_hold, log)
    )
    res: dict[str, dict] = dict(previous)
    with hold:
        load_before = [round(x, 2) for x in os.getloadavg()]
        for kind in [] if args.report_only else args.measure:
            res[kind] = run_measure(kind, args, data_path, log)
        st = [s["median_s"] for s in res.get("margo", {}).get("stages", [])]
        if "profile" not in res and st and max(st) > TARGETS["epoch_s"] and not args.report_only:
            res["profile"] = run_measure("profile", args, data_path, log)
        load_after = [round(x, 2) for x in os.getloadavg()]
    t_wall = time.perf_counter() - t0
    C.atomic_write_json(
        args.results / f"{NAME}.json",
        {
            "machine": info,
            "args": {
                k: str(v) if isinstance(v, Path) else v
                for k, v in vars(args).items()
                if not k.startswith("_")
            },
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "targets": TARGETS,
            "reference_mmrec": REFERENCE,
            "results": res,
            "wall_seconds": round(t_wall, 1),
        },
    )
    write_report(args, info, res, load_before, load_after, t_wall)
    log(f"[bench] wrote {args.results / NAME}.json/.md in {t_wall:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
