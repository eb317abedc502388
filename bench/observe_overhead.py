"""What request metrics and JSON access logs cost on the serving path (issue 5).

One synthetic bundle (default 10k items, flat index, response cache off), one uvicorn worker,
wrk on 127.0.0.1 as in bench/serve_load.py. Variants, started one after the other and
interleaved over ``--rounds`` so that the shared machine's load hits them alike:

* ``before``: the code before request observability and access checks landed (``--base``
  commit, exported with ``git archive``: no middleware, no key check on the fast path);
* ``off``: this tree, ``MARGO_METRICS_ENABLED=false MARGO_LOG_REQUESTS=false`` (the request-id
  middleware and the keyless public-read check remain);
* ``metrics``: Prometheus histograms and counters on, access log off;
* ``metrics+logs``: the production default, one JSON access line per request written to a
  file through the same logging config as ``margo serve``.

Endpoints: ``/_floor`` (a k=20 payload re-encoded, no ranking: the framework's floor, where
the per-request overhead shows most) and the real recommendation route.

    .venv/bin/python bench/observe_overhead.py                 # about 6 minutes
    .venv/bin/python bench/observe_overhead.py --duration 3 --rounds 1

Results: bench/results/observe_overhead.json and observe_overhead.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.serve_load import (  # noqa: E402
    K,
    ensure_bundle,
    free_port,
    loadavg,
    machine,
    prepare_db,
    run_wrk,
    wait_ready,
)

RESULTS = ROOT / "bench" / "results"
VARIANTS = ("before", "off", "metrics", "metrics+logs")
REC = f"/users/{{user}}/recommendations?k={K}&explain=true"


def export_base(commit: str, work: Path) -> Path:
    """The tree at ``commit`` under ``work`` (read-only use; the repository is not touched)."""
    dest = work / f"base-{commit[:12]}"
    if not (dest / "service").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def prepare_base_db(base: Path, work: Path, bundle: Path, n_items: int) -> None:
    """The base tree's own database (its migrations may be older than this tree's)."""
    code = (
        "import sys; from pathlib import Path; from bench.serve_load import prepare_db; "
        f"prepare_db(Path({str(work / 'base-db')!r}), Path({str(bundle)!r}), {n_items})"
    )
    (work / "base-db" / "empty-model-dir").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGO_")}
    env["PYTHONPATH"] = str(base)
    subprocess.run([sys.executable, "-c", code], cwd=base, env=env, check=True)
    for suffix in ("", "-wal", "-shm"):
        src = work / "base-db" / f"serve-{n_items}.db{suffix}"
        if src.exists():
            os.replace(src, work / f"serve-base-{n_items}.db{suffix}")


def env_for(work: Path, n_items: int, variant: str, tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARGO_", "PROMETHEUS_"))}
    db = f"serve-{n_items}.db" if variant != "before" else f"serve-base-{n_items}.db"
    env.update(
        MARGO_DATABASE_URL=f"sqlite:///{work / db}",
        MARGO_MODEL_DIR=str(work / "empty-model-dir"),
        MARGO_CACHE_ENABLED="false",
        MARGO_PUBLIC_READS="true",
        PYTHONPATH=str(tree),
        OMP_NUM_THREADS="1",
    )
    if variant != "before":
        env["MARGO_METRICS_ENABLED"] = "false" if variant == "off" else "true"
        env["MARGO_LOG_REQUESTS"] = "true" if variant == "metrics+logs" else "false"
    return env


def start(variant: str, tree: Path, env: dict[str, str], work: Path, port: int) -> Any:
    cmd = [
        sys.executable, "-m", "uvicorn", "bench.serve_load:bench_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
    ]  # fmt: skip
    if variant != "before":
        from service.log_config import logging_config

        config = work / "log_config.json"
        config.write_text(json.dumps(logging_config("json", "info")))
        cmd += ["--log-config", str(config)]
    else:
        cmd += ["--log-level", "warning"]
    log_file = open(work / f"server-{variant}.log", "w")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(cmd, env=env, cwd=tree, stderr=log_file, stdout=log_file)
    proc.log_file = log_file  # type: ignore[attr-defined]
    return wait_ready(proc, port, timeout_s=300, what=f"{variant} server")


def stop(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log_file.close()


# -- in process: the per-request cost without the network and the machine's noise ----------------
IN_PROCESS = ("bare", "off", "metrics", "metrics+logs")


def in_process(work: Path, n_items: int, requests: int, repeats: int) -> dict[str, Any]:
    """CPU microseconds per request through the whole ASGI app (middleware, routing, handler),
    driven directly on one event loop (the loop's thread time); best of ``repeats``. ``bare`` is ``off`` with the
    middleware removed from the app."""
    import asyncio
    import logging
    import logging.config

    from service.app import create_app
    from service.log_config import logging_config
    from service.settings import Settings

    out: dict[str, Any] = {}
    log_path = work / "in-process.log"
    for variant in IN_PROCESS:
        settings = Settings(
            database_url=f"sqlite:///{work / f'serve-{n_items}.db'}",
            model_dir=work / "empty-model-dir",
            public_reads=True,
            cache_enabled=True,  # the hit path: the cheapest real request, where overhead shows
            metrics_enabled=variant.startswith("metrics"),
            log_requests=variant == "metrics+logs",
        )
        config = logging_config("json", "info")
        config["handlers"]["default"] = {
            "class": "logging.FileHandler",
            "filename": str(log_path),
            "formatter": "margo",
        }
        logging.config.dictConfig(config)
        app = create_app(settings)
        if variant == "bare":
            app.user_middleware.clear()
        out[variant] = asyncio.run(_drive(app, requests, repeats))
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        print(f"  in process {variant:13} " + ", ".join(f"{k} {v:.1f} us" for k, v in
                                                      out[variant].items()), flush=True)  # fmt: skip
    return out


async def _drive(app: Any, requests: int, repeats: int) -> dict[str, float]:
    paths = {
        "recommendations (cache hit)": ("/users/u1/recommendations", b"k=20&explain=true"),
        "healthz": ("/healthz", b""),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message)

    async with app.router.lifespan_context(app):
        state = app.state.margo
        assert state.registry.wait_ready(300), "model did not load"
        result = {}
        for name, (path, query) in paths.items():
            best = float("inf")
            for _ in range(repeats):
                sent.clear()
                t0 = (
                    time.thread_time()
                )  # CPU time of this thread: waiting for a core is not counted
                for _ in range(requests):
                    scope = {
                        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                        "query_string": query, "root_path": "", "headers": [(b"host", b"x")],
                        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "app": app,
                    }  # fmt: skip
                    await app(scope, receive, send)
                best = min(best, (time.thread_time() - t0) / requests * 1e6)
                assert all(m["status"] == 200 for m in sent), sent[:1]
            result[name] = best
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--base", default="898c11a", help="a commit before issues 4 and 5 touched serving"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/margo-bench/observe"))
    parser.add_argument("--in-process-requests", type=int, default=3000)
    parser.add_argument("--in-process-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    (work / "empty-model-dir").mkdir(exist_ok=True)
    t_start = time.time()
    bundle = ensure_bundle(work, args.items)
    prepare_db(work, bundle, args.items)
    base = export_base(
        subprocess.run(
            ["git", "rev-parse", args.base], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip(),
        work,
    )
    prepare_base_db(base, work, bundle, args.items)
    trees = {v: (base if v == "before" else ROOT) for v in VARIANTS}
    per_request = in_process(work, args.items, args.in_process_requests, args.in_process_repeats)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for rnd in range(args.rounds):
        for variant in VARIANTS:
            port = free_port()
            env = env_for(work, args.items, variant, trees[variant])
            proc = start(variant, trees[variant], env, work, port)
            try:
                load_before = loadavg()
                result: dict[str, Any] = {"round": rnd, "loadavg_before": load_before}
                for name, path in (("floor", "/_floor"), ("rec", REC)):
                    for conns in (1, 32):
                        run_wrk(path, port, conns, args.warmup, work)
                        r = run_wrk(path, port, conns, args.duration, work)
                        result[f"{name}_c{conns}"] = r
                result["loadavg_after"] = loadavg()
            finally:
                stop(proc)
            with open(work / f"server-{variant}.log") as f:
                lines = sum(1 for _ in f)
            result["log_lines"] = lines
            runs[variant].append(result)
            print(
                f"round {rnd} {variant:13} floor c32 {result['floor_c32']['rps']:7.0f} req/s, "
                f"rec c32 {result['rec_c32']['rps']:6.0f} req/s, "
                f"floor c1 p50 {result['floor_c1']['p50_ms']:.3f} ms, log lines {lines}",
                flush=True,
            )
    summary = {
        v: {
            key: {
                "rps": statistics.median(r[key]["rps"] for r in runs[v]),
                "p50_ms": statistics.median(r[key]["p50_ms"] for r in runs[v]),
                "p99_ms": statistics.median(r[key]["p99_ms"] for r in runs[v]),
                "errors": sum(r[key]["errors"] for r in runs[v]),
            }
            for key in ("floor_c1", "floor_c32", "rec_c1", "rec_c32")
        }
        for v in VARIANTS
    }
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
        "items": args.items,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "in_process_requests": args.in_process_requests,
        "in_process_repeats": args.in_process_repeats,
        "base_commit": args.base,
        "runs": runs,
        "summary": summary,
        "in_process_us": per_request,
        "wall_s": time.time() - t_start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "observe_overhead.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "observe_overhead.md").write_text(report(result))
    print(report(result))
    return 0


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    m = result["machine"]
    lines = [
        "# Cost of request metrics and access logs (`bench/observe_overhead.py`)",
        "",
        f"Run {result['date']} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores, shared with "
        f"other engineers' jobs), {result['items']:,} items (flat index), one uvicorn worker, "
        f"response cache off, public reads, wrk 1 thread, {result['duration_s']:g} s per run, "
        f"median of {result['rounds']} interleaved rounds. Total {result['wall_s'] / 60:.1f} min.",
        "",
        "`before` is commit "
        f"`{result['base_commit']}` (no middleware, no metrics, no auth check on the fast path); "
        "`off` is this tree with `MARGO_METRICS_ENABLED=false MARGO_LOG_REQUESTS=false`; "
        "`metrics+logs` is the default (one JSON line per request, written to a file).",
        "",
        "| variant | floor c=32 req/s | floor c=1 p50 / p99 ms | recommendations c=32 req/s "
        "| recommendations c=1 p50 / p99 ms | floor req/s vs before | recs req/s vs before |",
        "|---|---|---|---|---|---|---|",
    ]
    b = s["before"]
    for v in VARIANTS:
        x = s[v]
        lines.append(
            f"| {v} | {x['floor_c32']['rps']:,.0f} | {x['floor_c1']['p50_ms']:.3f} / "
            f"{x['floor_c1']['p99_ms']:.3f} | {x['rec_c32']['rps']:,.0f} | "
            f"{x['rec_c1']['p50_ms']:.3f} / {x['rec_c1']['p99_ms']:.3f} | "
            f"{x['floor_c32']['rps'] / b['floor_c32']['rps']:.2f} | "
            f"{x['rec_c32']['rps'] / b['rec_c32']['rps']:.2f} |"
        )
    errors = sum(x[k]["errors"] for x in s.values() for k in x)
    ip = result["in_process_us"]
    names = list(ip["bare"])
    lines += [
        "",
        "## Per request, in process",
        "",
        "The same app driven directly on one event loop (no sockets, no wrk), best of "
        f"{result['in_process_repeats']} x {result['in_process_requests']:,} requests: microseconds "
        "per request. Recommendations hit the response cache here, the cheapest real request, "
        "where a fixed overhead weighs most. `bare` is `off` without the middleware.",
        "",
        "| variant | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{n} vs bare" for n in names)
        + " |",
        "|---|" + "---|" * (2 * len(names)),
    ]
    for v in IN_PROCESS:
        lines.append(
            f"| {v} | "
            + " | ".join(f"{ip[v][n]:.1f}" for n in names)
            + " | "
            + " | ".join(f"{ip[v][n] / ip['bare'][n]:.2f}" for n in names)
            + " |"
        )
    lines += [
        "",
        f"Failed or non-2xx responses over all runs: {errors}.",
        "",
        "Per round (req/s at 32 connections, floor / recommendations, and the 1-minute load "
        "average before the round):",
        "",
        "| variant | round | floor | recommendations | load avg |",
        "|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        for r in result["runs"][v]:
            lines.append(
                f"| {v} | {r['round']} | {r['floor_c32']['rps']:,.0f} | "
                f"{r['rec_c32']['rps']:,.0f} | {r['loadavg_before'][0]:.1f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
