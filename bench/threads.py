"""Thread settings under a competing load (issue 17.4): a BPR epoch on amazon-scientific-mmrec per
setting, in a fresh process (the OpenMP wait policy is read when torch loads), on the machine as it
is and then beside one busy loop per core, back to back: only their ratio means something.

    .venv/bin/python -m bench.threads [--epochs 6] [--data PATH]
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

from bench import harness as H

NAME = "threads"
DATA = H.DATA / "amazon-scientific-mmrec"
# label -> (TrainConfig.threads, extra environment); None = torch's default (one per core)
SETTINGS = {"torch default (one thread per core)": (None, {}), "threads=2, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
            "threads=1": (1, {}), "trainer default (threads=None: auto, PASSIVE)": ("auto", {})}


def child(data: str, threads: str, epochs: int) -> None:
    """Train BPR (one validation at the end) and print epoch seconds. ``auto`` imports the trainer
    first, as ``margo train`` does (its OpenMP wait policy applies); the others import torch first."""
    if threads == "auto":
        import trainer  # noqa: F401
    import torch

    from trainer.data.dataset import load_dataset
    from trainer.train import fit
    # "None": torch's own default count (one per core), pinned so the trainer keeps it
    t = torch.get_num_threads() if threads == "None" else None if threads == "auto" else int(threads)
    cfg = H.train_config(model="bpr", epochs=epochs, eval_every=epochs, threads=t, reg_weight=0.1)
    r = fit(load_dataset(data), cfg, progress=False)
    print(json.dumps({"epoch_s": r.stages[0].epoch_seconds[1:], "torch_threads": torch.get_num_threads()}))


def _busy(stop: float) -> None:
    while time.time() < stop:
        pass


def measure(data: Path, threads: object, env: dict[str, str], epochs: int, busy: int = 0) -> dict[str, Any]:
    """One setting in a fresh process, beside ``busy`` busy-loop processes."""
    cmd = [sys.executable, "-m", "bench.threads", "--child", str(threads), "--data", str(data), "--epochs", str(epochs)]
    procs = [mp.Process(target=_busy, args=(time.time() + 600,)) for _ in range(busy)]
    for pr in procs:
        pr.start()
    try:
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env, cwd=H.REPO,
                             capture_output=True, text=True, check=True)
    finally:
        for pr in procs:
            pr.terminate()
            pr.join()
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {**res, "median_epoch_s": statistics.median(res["epoch_s"]), "wall_s": time.perf_counter() - t0, "loadavg": H.loadavg()}


def markdown(data: dict[str, Any]) -> str:
    rows = [[label, s["quiet"]["torch_threads"],
             *(f"{s[k]['median_epoch_s']:.3f}" for k in ("quiet", "busy")), f"{s['ratio']:.1f}x",
             f"{s['quiet']['loadavg'][0]:.1f} / {s['busy']['loadavg'][0]:.1f}"] for label, s in data["settings"].items()]
    heads = ["setting", "torch threads", "s/epoch", "s/epoch busy", "busy / quiet", "load 1m"]
    table = H.md_table(heads, rows)
    return H.template(NAME, "report", d=data, table=table, machine=H.machine_md(data["machine"]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--child", help=argparse.SUPPRESS)  # one setting's own process
    p.add_argument("--results", type=Path, default=H.RESULTS)
    a = p.parse_args(argv)
    if a.child:
        return child(str(a.data), a.child, a.epochs)
    data = {"machine": H.machine_info(None), "cores": (cores := os.cpu_count() or 1), "data": a.data.name,
            "epochs": a.epochs, "settings": {}}
    for label, (threads, env) in SETTINGS.items():
        quiet, loaded = (measure(a.data, threads, env, a.epochs, busy) for busy in (0, cores))
        data["settings"][label] = s = {"env": env, "quiet": quiet, "busy": loaded,
                                       "ratio": loaded["median_epoch_s"] / quiet["median_epoch_s"]}
        print(label, s["ratio"], flush=True)
    H.write_report(a.results, NAME, data, markdown(data))


if __name__ == "__main__":
    main()
