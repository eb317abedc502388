"""Freshness benchmark (issue 16): fold-in of new users, new interactions and new items against a
model retrained with them, on MMRec's fixed splits (x_label 0/1/2 = train/valid/test).

Per (dataset, seed) two training runs with the trainer's defaults (``margo train``; ``--epochs``
caps each stage): *base* on a reduced copy of the training data and *retrained* on all of it.
The base copy (a temporary dataset under WORKDIR, never in the repo) leaves out
  - 10% of users entirely ("new users": their training rows are posted after training);
  - 10% of items and all their rows ("new items": added from their features afterwards);
  - the last 20% (file row order) of every other user's training rows ("returning users").
Users left with no training row are dropped from the base copy (and from the questions).
Metrics: trainer/metrics.py's full ranking, training items masked, test targets. New and
returning users are ranked over the base catalogue (the retrained model over the same columns);
new items: every base user ranks base + folded items, and cold recall is the share of test pairs
on new items found in the user's top-20 (micro average). Bundles and runs resume from WORKDIR.

    nice -n 10 .venv/bin/python -m bench.freshness --quick          # smoke (synthetic, 2 epochs)
    nice -n 10 .venv/bin/python -m bench.freshness --datasets mlsmall --seeds 0,1,2
    .venv/bin/python -m bench.freshness --report-only
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness as H

DATA = {"mlsmall": H.MLSMALL_MMREC, "amazon-scientific": Path("/work/shared/data/amazon-scientific-mmrec")}
SYNTH = {"n_users": 2000, "n_items": 1000, "n_interactions": 25000, "modalities": {"image": 128, "text": 64}}
QUICK_SYNTH = {"n_users": 300, "n_items": 200, "n_interactions": 3000, "modalities": {"image": 16, "text": 8}}
NEW_USERS, NEW_ITEMS, HELD_BACK = 0.1, 0.1, 0.2
K = 20


@dataclass
class Split:
    """Indices into the full dataset (users, items) of each question's population."""

    new_users: np.ndarray  # held out entirely
    cold_items: np.ndarray  # held out with all their rows
    base_users: np.ndarray  # users of the base copy (sorted; row b of the base bundle)
    base_items: np.ndarray  # items of the base copy (sorted)
    base_rows: np.ndarray  # int [n, 3] (user, item, x_label) of the base copy, full indices
    held_back: np.ndarray  # int [n, 2] training pairs of base users held back (warm items only)


def make_split(n_users: int, n_items: int, train: np.ndarray, valid: np.ndarray, test: np.ndarray,
               seed: int) -> Split:
    """The base copy's rows; ``train`` in file row order (the held-back rows are each user's last)."""
    rng = np.random.default_rng([seed, 16])
    new_users = np.sort(rng.choice(n_users, max(1, round(NEW_USERS * n_users)), replace=False))
    cold = np.sort(rng.choice(n_items, max(1, round(NEW_ITEMS * n_items)), replace=False))
    # position of each training row among its user's rows, and the user's count
    order = np.argsort(train[:, 0], kind="stable")
    counts = np.bincount(train[:, 0], minlength=n_users)
    pos = np.empty(len(train), np.int64)
    pos[order] = np.arange(len(train)) - np.repeat(np.cumsum(counts) - counts, counts)
    back = pos >= counts[train[:, 0]] - np.round(HELD_BACK * counts[train[:, 0]])
    warm_u, warm_i = ~np.isin(np.arange(n_users), new_users), ~np.isin(np.arange(n_items), cold)
    keep_train = warm_u[train[:, 0]] & warm_i[train[:, 1]] & ~back
    base_users = np.unique(train[keep_train, 0])  # users with a training row left
    in_base = np.isin(np.arange(n_users), base_users)
    rows = [np.c_[train[keep_train], np.zeros(keep_train.sum(), np.int64)]]
    for label, pairs in ((1, valid), (2, test)):
        k = in_base[pairs[:, 0]] & warm_i[pairs[:, 1]]
        rows.append(np.c_[pairs[k], np.full(k.sum(), label, np.int64)])
    held = train[back & in_base[train[:, 0]] & warm_i[train[:, 1]]]
    return Split(new_users, cold, base_users, np.flatnonzero(warm_i), np.concatenate(rows), held)


def write_base(data: Any, split: Split, out: Path) -> Path:
    """The base copy as a dataset bundle (ids renumbered, external ids kept)."""
    from trainer.data import write_dataset

    u_new = np.full(data.n_users, -1, np.int64)
    u_new[split.base_users] = np.arange(len(split.base_users))
    i_new = np.full(data.n_items, -1, np.int64)
    i_new[split.base_items] = np.arange(len(split.base_items))
    r = split.base_rows
    inter = np.c_[u_new[r[:, 0]], i_new[r[:, 1]], r[:, 2]]
    return write_dataset(out, name=data.name, interactions=inter, overwrite=True,
                         features={m: f[split.base_items] for m, f in data.features.items()},
                         user_ids=[data.user_ids[u] for u in split.base_users],
                         item_ids=[data.item_ids[i] for i in split.base_items])


# -- training (a fresh process per run, one machine-wide slot each) -----------------------------
def train_run(data_path: str, out: str, seed: int, epochs: int, slots: str, n_slots: int) -> dict[str, Any]:
    """``margo train`` defaults (seed, one thread, ``epochs`` cap): the bundle at ``out`` and the
    pickled fit result beside it, so a newer exporter can rewrite the bundle without training."""
    os.nice(10)
    import torch

    torch.set_num_threads(1)
    from trainer.data import load_dataset
    from trainer.export import export_model
    from trainer.train import fit

    with H.training_slot(Path(slots), n_slots):
        cfg = H.train_config(seed=seed, threads=1, epochs=epochs)
        data, load = load_dataset(data_path), H.loadavg()
        res = fit(data, cfg, progress=False)
        torch.save(res, f"{out}.fit.pt")
        export_model(res, data, cfg, out, overwrite=True)
        rec = {"data": data_path, "seed": seed, "epochs_cap": epochs, "seconds": round(res.seconds, 1),
               "stages": [(s.stage, s.best_epoch, s.epochs_run) for s in res.stages],
               "valid_r20": res.valid.get("recall@20"), "test_r20": res.test.get("recall@20"),
               "loadavg_start": load, "loadavg_end": H.loadavg()}
        H.atomic_write_json(Path(f"{out}.run.json"), rec)
        return rec


def dataset_path(name: str, args: Any) -> Path:
    if name == "synth":
        return H.ensure_dataset(args.workdir / "freshness" / ("synth-quick" if args.quick else "synth"),
                                "import_synth", seed=0, **(QUICK_SYNTH if args.quick else SYNTH))
    return DATA[name]


def prepare(name: str, seed: int, args: Any) -> tuple[Any, Split, Path, list[tuple[str, str]]]:
    """The dataset, its split, the run folder and the (data, bundle) runs it still needs."""
    from trainer.data import load_dataset

    data = load_dataset(dataset_path(name, args))
    split = make_split(data.n_users, data.n_items, data.train, data.valid, data.test, seed)
    run_dir = args.workdir / "freshness" / ("quick" if args.quick else "runs") / f"{name}-s{seed}"
    base_data = run_dir / "base-data"
    if not (base_data / "stats.json").is_file() and not args.report_only:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_base(data, split, base_data)
    todo = [(str(d), str(run_dir / b)) for d, b in ((base_data, "base"), (data.path, "retrained"))
            if not (run_dir / f"{b}.run.json").is_file()]
    return data, split, run_dir, todo


def train_all(jobs: list[tuple[str, str, int]], args: Any, log: Any) -> None:
    from concurrent.futures import as_completed

    with H.process_pool(args.jobs) as pool:
        futs = {pool.submit(train_run, d, out, seed, args.epochs, str(args.workdir / "slots"),
                            args.max_train): out for d, out, seed in jobs}
        for f in as_completed(futs):
            try:
                r = f.result()
                log(f"[freshness] trained {futs[f]}: {r['stages']} test R@20 {r['test_r20']:.4f} "
                    f"({r['seconds']:.0f}s)")
            except Exception as exc:  # noqa: BLE001 - one failed run must not stop the others
                log(f"[freshness] FAILED {futs[f]}: {exc!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    H.add_common_args(p)
    p.add_argument("--datasets", default="mlsmall,synth,amazon-scientific")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=100, help="cap on epochs per stage (default 100)")
    p.add_argument("--train-only", action="store_true", help="train the missing runs, no evaluation")
    args = H.parse_args(p, argv)
    if args.quick:
        args.datasets, args.seeds, args.epochs = "synth", "0", 2
    log = H.make_logger(args.workdir / "freshness" / "log.txt")
    names, seeds = args.datasets.split(","), [int(s) for s in args.seeds.split(",")]
    # seeds outer, datasets inner: every dataset gets a first seed before any gets a third
    cells = [(n, s, *prepare(n, s, args)) for s in seeds for n in names]
    jobs = [(d, out, s) for n, s, _, _, _, todo in cells for d, out in todo]
    if jobs and not args.report_only:
        log(f"[freshness] training {len(jobs)} runs (load {H.loadavg()})")
        t = time.perf_counter()
        train_all(jobs, args, log)
        log(f"[freshness] training done in {time.perf_counter() - t:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
