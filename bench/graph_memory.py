"""Peak memory of the D6 user co-occurrence graph (issue 14): built in a fresh spawned process per
case, peak RSS (which includes the ~300 MB of imports) for 20,000 users sharing one item and for
the Baby-shaped synthetic set (``margo import synth`` defaults, 8-dim text features: only the
interactions matter); the computation before issue 14 (the whole product R R^T at once, kept
as the oracle of tests/trainer/test_user_graph_blocks.py) side by side where it fits in memory.

    .venv/bin/python -m bench.graph_memory             # ~10 minutes on 2 shared cores
    .venv/bin/python -m bench.graph_memory --quick     # smoke check (results under WORKDIR)
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from bench import harness as H

NAME = "graph_memory"
WHOLE = 0  # marks the computation before issue 14: the whole product R R^T at once
GRAPH_K = 10
TARGET_MB = 2048.0


def one_item_matrix(n_users: int, seed: int = 0) -> Any:
    """Every user has item 0 and one of 100 other items: n_users^2 co-occurrence pairs."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    rows = np.r_[np.arange(n_users), np.arange(n_users)]
    cols = np.r_[np.zeros(n_users, np.int64), rng.integers(1, 101, n_users)]
    ones = np.ones(rows.size, np.float32)
    return sp.csr_matrix((ones, (rows, cols)), shape=(n_users, 101))


def graph_peak(shape: str, n_users: int, block_entries: int | None, dataset: str | None) -> dict[str, Any]:
    """Build the user graph once in this (fresh) process: peak RSS before and after, seconds."""
    # the code before issue 14, kept in the tests as the oracle
    from tests.trainer.test_user_graph_blocks import whole_product_graph
    from trainer import graphs
    from trainer.data.dataset import load_dataset

    r = one_item_matrix(n_users) if dataset is None else load_dataset(dataset).train_matrix()
    before = H.peak_rss_mb()
    t0 = time.perf_counter()
    g = whole_product_graph(r, GRAPH_K) if block_entries == WHOLE else graphs.user_cooccurrence_graph(r, GRAPH_K)
    seconds = time.perf_counter() - t0
    return {"shape": shape, "users": r.shape[0], "items": r.shape[1], "interactions": int(r.nnz),
            "builder": "whole product (before)" if block_entries == WHOLE else "blocks (now)",
            "edges": int(g.nnz), "rss_before_mb": round(before), "peak_rss_mb": round(H.peak_rss_mb()),
            "seconds": round(seconds, 2)}


def memory_cases(args: argparse.Namespace, log: Any) -> list[dict[str, Any]]:
    baby = H.ensure_dataset(args.workdir / ("faults-baby-quick" if args.quick else "faults-baby"), "import_synth", modalities={"text": 8},
                            **({"n_users": 2000, "n_items": 700, "n_interactions": 16000} if args.quick else {}))
    big = 2000 if args.quick else 20_000
    old = (1000, 2000) if args.quick else (4000, 8000)  # the whole product: ~50 bytes per pair
    cases = [(f"{n} users on one item", n, WHOLE, None) for n in old]
    cases += [(f"{n} users on one item", n, None, None) for n in dict.fromkeys((*old, big))]
    cases += [("Baby-shaped synth", 0, b, str(baby)) for b in (WHOLE, None)]
    out = []
    for shape, n, block, dataset in cases:
        row = H.isolated(graph_peak, shape, n, block, dataset)
        log(f"[memory] {row}")
        out.append(row)
    return out


def memory_md(rows: list[dict[str, Any]]) -> str:
    table = H.md_table(["case", "users", "builder", "edges", "RSS before (MB)", "peak RSS (MB)", "seconds"],
                       [[r["shape"], r["users"], r["builder"], r["edges"], r["rss_before_mb"], r["peak_rss_mb"],
                         f"{r['seconds']:g}"] for r in rows])
    worst = max(r["peak_rss_mb"] for r in rows if r["builder"] == "blocks (now)")
    return (f"User co-occurrence graph, k={GRAPH_K}.\n\n{table}\n\nWorst peak RSS of the block builder: "
            f"{worst} MB (target <= {TARGET_MB:.0f} MB: {'met' if worst <= TARGET_MB else 'NOT met'}). Same graph "
            "either way (tests/trainer/test_user_graph_blocks.py). Seconds are on a shared 2-core machine (load average above): compare them within this table only.\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.graph_memory", description=__doc__.split("\n\n")[0])
    H.add_common_args(p)
    args = H.parse_args(p, argv)
    log = H.make_logger(args.workdir / f"{NAME}.log")
    if args.report_only:
        data = json.loads((args.results / f"{NAME}.json").read_text())
    else:
        info = H.machine_info(packages=("scipy",))
        data = {"machine": info, "commit": H.git_commit(), "target_mb": TARGET_MB, "cases": memory_cases(args, log)}
    md = f"# User graph memory (issue 14)\n\n{H.machine_md(data['machine'])}\n{memory_md(data['cases'])}"
    for path in H.write_report(args.results, NAME, data, md):
        log(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
