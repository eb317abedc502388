"""Peak memory of the D6 user co-occurrence graph (issue 14), each case in a fresh spawned process
(peak RSS includes ~300 MB of imports): 20,000 users sharing one item, and the Baby-shaped synthetic
set; the computation before issue 14 (the whole product R R^T, the oracle of
tests/trainer/test_user_graph_blocks.py) side by side where it fits in memory.

    .venv/bin/python -m bench.graph_memory [--quick]
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench import harness as H

NAME = "graph_memory"
WHOLE = 0  # marks the computation before issue 14: the whole product R R^T at once
GRAPH_K, TARGET_MB = 10, 2048.0


def graph_peak(shape: str, n_users: int, block_entries: int | None, dataset: str | None) -> dict[str, Any]:
    """Build the user graph once in this (fresh) process: peak RSS before and after, seconds."""
    import scipy.sparse as sp

    from tests.trainer.test_user_graph_blocks import whole_product_graph
    from trainer import graphs
    from trainer.data.dataset import load_dataset
    if dataset is None:  # every user has item 0 and one of 100 others: n_users^2 co-occurrence pairs
        cols = np.r_[np.zeros(n_users, np.int64), np.random.default_rng(0).integers(1, 101, n_users)]
        r = sp.csr_matrix((np.ones(cols.size, np.float32), (np.r_[np.arange(n_users), np.arange(n_users)], cols)), shape=(n_users, 101))
    else:
        r = load_dataset(dataset).train_matrix()
    before, t0 = H.peak_rss_mb(), time.perf_counter()
    g = whole_product_graph(r, GRAPH_K) if block_entries == WHOLE else graphs.user_cooccurrence_graph(r, GRAPH_K)
    return {"shape": shape, "users": r.shape[0], "items": r.shape[1], "interactions": int(r.nnz),
            "builder": "whole product (before)" if block_entries == WHOLE else "blocks (now)", "edges": int(g.nnz),
            "rss_before_mb": round(before), "peak_rss_mb": round(H.peak_rss_mb()), "seconds": round(time.perf_counter() - t0, 2)}


def markdown(data: dict[str, Any]) -> str:
    rows = data["cases"]
    worst = max(r["peak_rss_mb"] for r in rows if r["builder"] == "blocks (now)")
    keys = ("shape", "users", "builder", "edges", "rss_before_mb", "peak_rss_mb")
    table = H.md_table(["case", "users", "builder", "edges", "RSS before (MB)", "peak RSS (MB)", "seconds"],
                       [[*(r[k] for k in keys), f"{r['seconds']:g}"] for r in rows])
    return H.template(NAME, "report", machine=H.machine_md(data["machine"]), k=GRAPH_K, table=table,
                      worst=worst, target=TARGET_MB, met="met" if worst <= TARGET_MB else "NOT met")


def main(argv: list[str] | None = None) -> int:
    args = H.parse_args(H.parser(__doc__), argv)
    log = H.make_logger(args.workdir / f"{NAME}.log")
    if args.report_only:
        data = H.stored_report(args, NAME)
    else:
        baby = H.ensure_dataset(args.workdir / ("faults-baby-quick" if args.quick else "faults-baby"), "import_synth", modalities={"text": 8},
                                **({"n_users": 2000, "n_items": 700, "n_interactions": 16000} if args.quick else {}))
        old = (1000, 2000) if args.quick else (4000, 8000)  # the whole product: ~50 bytes per pair
        cases = [(f"{n} users on one item", n, b, None)
                 for b, ns in ((WHOLE, old), (None, dict.fromkeys((*old, 2000 if args.quick else 20_000))))
                 for n in ns] + [("Baby-shaped synth", 0, b, str(baby)) for b in (WHOLE, None)]
        data = {"machine": H.machine_info(packages=("scipy",)), "commit": H.git_commit(), "target_mb": TARGET_MB, "cases": []}
        for case in cases:
            data["cases"].append(H.isolated(graph_peak, *case))
            log(f"[memory] {data['cases'][-1]}")
    H.write_report(args.results, NAME, data, markdown(data), log=log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
