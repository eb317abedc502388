"""What request metrics and JSON access logs cost on the serving path (issue 5): one synthetic bundle
served as by bench.serve_load, variants interleaved over ``--rounds`` (``before`` = the ``--base``
commit via ``git archive``, or another checkout; ``off``, ``metrics``, ``metrics+logs`` = this tree's
settings), then the same app from ``create_app`` driven in process (no sockets): CPU µs per request.

    .venv/bin/python -m bench.observe_overhead [--quick]
"""

from __future__ import annotations

import asyncio
import json
import logging.config
import time
from pathlib import Path
from typing import Any

from bench import harness as H
from bench.serve_load import REC, alternate, ensure_bundle, service_env, setup_db
from service.app import create_app
from service.log_config import logging_config
from service.settings import Settings

NAME = "observe_overhead"
VARIANTS = ("before", "off", "metrics", "metrics+logs")
IN_PROCESS = ("bare", "off", "metrics", "metrics+logs")
KEYS = ("floor_c1", "floor_c32", "rec_c1", "rec_c32")


# -- in process: the per-request cost without the network and the machine's noise ---------------------
def in_process(db: Path, work: Path, requests: int, repeats: int) -> dict[str, dict[str, float]]:
    """CPU microseconds per request through the whole ASGI app on one event loop (the loop's thread
    time), best of ``repeats``; ``bare`` is ``off`` without the middleware."""
    out: dict[str, dict[str, float]] = {}
    for variant in IN_PROCESS:
        settings = Settings(database_url=f"sqlite:///{db}", model_dir=work / "empty-model-dir", public_reads=True,
                            cache_enabled=True,  # the hit path: the cheapest real request, where overhead shows
                            metrics_enabled=variant.startswith("metrics"), log_requests=variant == "metrics+logs")
        handler = {"class": "logging.FileHandler", "filename": str(work / "in-process.log"), "formatter": "margo"}
        logging.config.dictConfig({**(config := logging_config("json", "info")), "handlers": {**config["handlers"], "default": handler}})
        app = create_app(settings)
        if variant == "bare":
            app.user_middleware.clear()
        out[variant] = asyncio.run(_drive(app, requests, repeats))
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        print(f"  in process {variant:13} " + ", ".join(f"{k} {v:.1f} us" for k, v in out[variant].items()), flush=True)
    return out


async def _drive(app: Any, requests: int, repeats: int) -> dict[str, float]:
    paths, sent = {"recommendations (cache hit)": ("/users/u1/recommendations", b"k=20&explain=true"),
                   "healthz": ("/healthz", b"")}, []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message)

    async def call(path: str, query: bytes) -> None:
        await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                   "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "", "app": app,
                   "headers": [(b"host", b"x")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}, receive, send)

    async with app.router.lifespan_context(app):
        for _ in range(1200):  # the model loads in the background: wait for /readyz
            sent.clear()
            await call("/readyz", b"")
            if sent[-1]["status"] == 200:
                break
            await asyncio.sleep(0.25)
        else:
            raise RuntimeError("the model did not load in 300 s")
        result = {}
        for name, (path, query) in paths.items():
            result[name] = float("inf")
            for _ in range(repeats):
                sent.clear()
                t0 = time.thread_time()  # CPU time of this thread: waiting for a core is not counted
                for _ in range(requests):
                    await call(path, query)
                result[name] = min(result[name], (time.thread_time() - t0) / requests * 1e6)
                if any(m["status"] != 200 for m in sent):
                    raise RuntimeError(f"{path}: {sent[0]}")
    return result


# -- report ----------------------------------------------------------------------------------------------
def rps(x: dict[str, float]) -> str:
    return f"{x['rps']:,.0f}"


def p50_99(x: dict[str, float]) -> str:
    return f"{x['p50_ms']:.3f} / {x['p99_ms']:.3f}"


def report(result: dict[str, Any]) -> str:
    s, b, ip = result["summary"], result["summary"]["before"], result["in_process_us"]
    names = list(ip["bare"])
    wrk = [[v, rps(x["floor_c32"]), p50_99(x["floor_c1"]), rps(x["rec_c32"]), p50_99(x["rec_c1"]),
            *(f"{x[k]['rps'] / b[k]['rps']:.2f}" for k in ("floor_c32", "rec_c32"))] for v, x in s.items()]
    return H.template(
        NAME, "report", m=result["machine"], r=result, wall=result["wall_s"] / 60,
        quick=" **QUICK SMOKE RUN**: not a measurement." if result.get("quick") else "",
        errors=sum(x[k]["errors"] for x in s.values() for k in x),
        wrk=H.md_table(["variant", "floor c=32 req/s", "floor c=1 p50 / p99 ms", "recommendations c=32 req/s",
                        "recommendations c=1 p50 / p99 ms", "floor req/s vs before", "recs req/s vs before"], wrk),
        in_process=H.md_table(["variant", *names, *(f"{n} vs bare" for n in names)],
                              [[v, *(f"{ip[v][n]:.1f}" for n in names),
                                *(f"{ip[v][n] / ip['bare'][n]:.2f}" for n in names)] for v in IN_PROCESS]),
        rounds=H.md_table(["variant", "round", "floor", "recommendations", "load avg"],
                          [[v, r["round"], rps(r["floor_c32"]), rps(r["rec_c32"]),
                            f"{r['loadavg_before'][0]:.1f}"] for v in VARIANTS for r in result["runs"][v]]))


def measure(args: Any) -> dict[str, Any]:
    (work := args.workdir / "observe").mkdir(parents=True, exist_ok=True)
    t_start, log_config, (trees, _) = time.time(), work / "log_config.json", H.versus(args.base, work)
    base = trees["baseline"]
    bundle = ensure_bundle(work, args.items, args.users, base)  # both read the older format
    dbs = {"before": work / f"serve-base-{args.items}.db", "this": work / f"serve-{args.items}.db"}
    for key, tree in (("before", base), ("this", H.REPO)):
        setup_db(tree, dbs[key], bundle, work)
    per_request = in_process(dbs["this"], work, args.in_process_requests, args.in_process_repeats)
    log_config.write_text(json.dumps(logging_config("json", "info")))
    variants = {"before": {"tree": base, "env": service_env(base, dbs["before"], work)}}  # predates both
    for v in VARIANTS[1:]:
        env = service_env(H.REPO, dbs["this"], work, metrics_enabled=str(v != "off").lower(),
                          log_requests=str(v == "metrics+logs").lower())
        variants[v] = {"tree": H.REPO, "log_config": log_config, "env": env}
    held, rows = alternate(variants, args, work)
    runs, stats = {v: [r for r in rows if r["tree"] == v] for v in VARIANTS}, ("rps", "p50_ms", "p99_ms")
    med = H.medians(({r["tree"]: r} for r in rows), lambda r: {(k, q): r[k][q] for k in KEYS for q in stats})
    summary = {v: {k: {**{q: med[v][k, q] for q in stats}, "errors": sum(r[k]["errors"] for r in runs[v])}
                   for k in KEYS} for v in VARIANTS}
    return {"machine": H.machine_info(packages=("fastapi", "uvicorn")), "items": args.items,
            "duration_s": args.duration, "rounds": args.rounds, "in_process_requests": args.in_process_requests,
            "quick": args.quick, "in_process_repeats": args.in_process_repeats,
            "base_commit": args.base, "bench_slots_held": held, "rec_path": REC, "runs": runs,
            "summary": summary, "in_process_us": per_request, "wall_s": time.time() - t_start}


def main(argv: list[str] | None = None) -> int:
    p = H.parser(__doc__, ("--items", 10_000, None), ("--users", 20_000, None),
                 ("--duration", 6.0, "seconds per wrk run"), ("--warmup", 2.0, None),
                 ("--rounds", 2, "interleaved rounds, ABBA order (default 2)"),
                 ("--slot-wait", 300.0, "max seconds to wait for the bench training slots"),
                 ("--in-process-requests", 3000, None), ("--in-process-repeats", 5, None),
                 ("--base", "898c11a", "a commit before issues 4 and 5 touched serving"), jobs=1)
    args = H.parse_args(p, argv, items=2000, users=500, duration=1, warmup=1, rounds=1,
                        in_process_requests=100, in_process_repeats=1)
    result = H.stored_report(args, NAME) if args.report_only else measure(args)
    H.write_report(args.results, NAME, result, report(result), log=print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
