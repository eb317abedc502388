"""Serving benchmark: wrk against ``margo``'s API on 127.0.0.1, one uvicorn worker.

For synthetic bundles of 10k, 100k and 1M items (2 modalities x 64-d, planted clusters, see
bench/synth_bundle.py) it measures, in one run:

* requests/s and p50/p99 latency of ``GET /users/{random}/recommendations?k=20&explain=true``
  (uncached, exclude_seen) at 1 and at 32 connections;
* the same for the floor: ``GET /_floor`` of the same app, which returns a payload of the same
  size (a real k=20 response) through the same orjson encoder, without ranking;
* recall@20 of the index the service picks (same filters) against exact search, plus the
  in-process cost of one ranking, and a sweep of the ANN alternatives behind the defaults.

Results: bench/results/serve_load.json and serve_load.md (+ serve_load.png). Bundles, SQLite
files and indexes live under --work (default /tmp/margo-bench/serve), outside the repository.

    .venv/bin/python bench/serve_load.py                      # everything, about 15 minutes
    .venv/bin/python bench/serve_load.py --sizes 10000 --duration 3   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIZES = (10_000, 100_000, 1_000_000)
USERS = 20_000
K = 20
TARGETS = {
    "rps_32_at_100k": 1500.0,  # requests/s at 32 connections, one worker
    "p99_ms_1_at_100k": 5.0,  # p99 at 1 connection
    "recall_at_1m": 0.98,  # recall@20 against exact search
    "p99_ms_1_at_1m": 10.0,
}
WRK_SCRIPT = """
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local path = PATH
  if string.find(path, "{user}") then
    path = string.gsub(path, "{user}", "u" .. math.random(0, USERS - 1))
  end
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


# -- the app under test ----------------------------------------------------------------------
def bench_app() -> Any:
    """``create_app()`` plus ``GET /_floor``: a real k=20 payload, re-encoded per request.

    The floor is a plain Starlette route, like the recommendation route it is compared with
    (service/api/users.py), so both pay the same framework costs.
    """
    import orjson
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from service.app import create_app
    from service.ranking import RecQuery, recommend

    app = create_app()
    payload: dict[str, Any] = {}

    async def floor(request: Request) -> Response:
        if not payload:
            state = request.app.state.margo
            payload.update(recommend(state.registry.current, RecQuery("u0", k=K), state.ranking))
        return Response(orjson.dumps(payload), media_type="application/json")

    app.router.routes.insert(0, Route("/_floor", floor, methods=["GET"]))
    return app


# -- helpers -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import faiss
    import fastapi
    import uvicorn

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
    }


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


@contextlib.contextmanager
def quiet_machine(slots_dir: Path, n: int, wait_s: float) -> Iterator[bool]:
    """Hold the benchmark training slots (bench/common.py) while measuring, so the other
    benchmark scripts pause between their training runs; gives up after ``wait_s``."""
    files = []
    deadline = time.monotonic() + wait_s
    try:
        if n > 0:
            slots_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            f = open(slots_dir / f"slot{i}.lock", "w")  # noqa: SIM115 - held while measuring
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    files.append(f)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        f.close()
                        break
                    time.sleep(1.0)
        yield len(files) == n
    finally:
        for f in files:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()


def ensure_bundle(work: Path, n_items: int) -> Path:
    from bench.synth_bundle import write

    path = work / "bundles" / f"items-{n_items}"
    if not (path / "manifest.json").is_file():
        print(f"  generating {path} ...", flush=True)
        write(path, n_items, USERS)
    return path


def env_for(work: Path, n_items: int) -> dict[str, str]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("MARGO_"):
            del env[key]
    (work / "empty-model-dir").mkdir(parents=True, exist_ok=True)
    env.update(
        MARGO_DATABASE_URL=f"sqlite:///{work / f'serve-{n_items}.db'}",
        MARGO_MODEL_DIR=str(work / "empty-model-dir"),
        MARGO_CACHE_ENABLED="false",
        MARGO_PUBLIC_READS="true",  # the load is anonymous reads; keyed reads cost one hash
        PYTHONPATH=str(ROOT),
    )
    return env


def prepare_db(work: Path, bundle: Path, n_items: int) -> dict[str, float]:
    """Fresh SQLite database; register and activate the bundle (builds or reads the index)."""
    from service.cache import NullCache
    from service.db.migrate import upgrade
    from service.db.session import Database
    from service.events import EventBus
    from service.index import set_faiss_threads
    from service.registry import Registry
    from service.settings import Settings

    db_file = work / f"serve-{n_items}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    settings = Settings(
        database_url=f"sqlite:///{db_file}", model_dir=work / "empty-model-dir", faiss_threads=2
    )
    upgrade(settings.database_url)
    set_faiss_threads(2)  # index build only; the server runs with one thread
    db = Database(settings.database_url)
    registry = Registry(settings, db, NullCache(), EventBus(None, prefix="bench:"))
    t0 = time.perf_counter()
    registry.register(bundle)
    t1 = time.perf_counter()
    index_files = list((bundle / "index").glob("*.faiss")) if (bundle / "index").is_dir() else []
    registry.activate(bundle.name)  # builds the index if no file matches yet
    t2 = time.perf_counter()
    load = registry.current.load_seconds if registry.current else float("nan")
    db.dispose()
    set_faiss_threads(1)
    return {
        "register_s": t1 - t0,
        "activate_s": t2 - t1,
        "model_load_s": load,
        "index_was_cached": bool(index_files),
    }


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "uvicorn", "bench.serve_load:bench_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    return wait_ready(proc, port, timeout_s=600)


def wait_ready(
    proc: subprocess.Popen, port: int, *, timeout_s: float, what: str = "server"
) -> subprocess.Popen:
    """``proc`` once its /readyz answers 200; killed, with an error, when it never does."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"{what} not ready after {timeout_s:.0f} s")


def run_wrk(url_path: str, port: int, conns: int, duration: float, work: Path) -> dict[str, Any]:
    script = work / "wrk.lua"
    script.write_text(WRK_SCRIPT.replace("PATH", json.dumps(url_path)).replace("USERS", str(USERS)))
    cmd = [
        "wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--timeout", "10s",
        "-s", str(script), f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^WRK (\{.*\})$", out, re.M)
    if match is None:
        raise RuntimeError(f"no wrk summary in:\n{out}")
    r = json.loads(match.group(1))
    seconds = r["duration_us"] / 1e6
    return {
        "connections": conns,
        "requests": r["requests"],
        "errors": r["errors"] + r["non2xx"],
        "rps": r["requests"] / seconds,
        "p50_ms": r["p50_us"] / 1e3,
        "p90_ms": r["p90_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "mean_ms": r["mean_us"] / 1e3,
    }


# -- recall and in-process costs -----------------------------------------------------------------
def index_quality(bundle: Path, n_users: int = 300, seed: int = 1) -> dict[str, Any]:
    """recall@20 of the service's ranking (default settings) against exact search."""
    from service.index import set_faiss_threads
    from service.live import LiveModel
    from service.ranking import RankingConfig, RecQuery, personal_rows
    from service.settings import Settings

    set_faiss_threads(1)
    settings = Settings()
    model = LiveModel.load(version=bundle.name, bundle_path=bundle, settings=settings, db=None)
    cfg = RankingConfig(
        settings.candidate_pool, settings.ann_pool_max, settings.exact_subset_max_items
    )
    users = np.random.default_rng(seed).choice(model.bundle.n_users, n_users, replace=False)
    truth = exact_top(model, users)
    hits, costs = 0, []
    for u, best in zip(users, truth, strict=True):
        t0 = time.perf_counter()
        got = personal_rows(model, int(u), RecQuery(f"u{u}", k=K), cfg)[:K]
        costs.append(time.perf_counter() - t0)
        hits += len(set(got.tolist()) & set(best.tolist()))
    params = model.index.params
    out = {
        "index": params.kind.value,
        "params": {k: v for k, v in vars(params).items() if k != "kind"},
        "recall_at_20": hits / (K * len(users)),
        "rank_p50_ms": float(np.median(costs) * 1e3),
        "rank_p99_ms": float(np.percentile(costs, 99) * 1e3),
    }
    out["sweep"] = ann_sweep(model, users, truth)
    return out


def exact_top(model: Any, users: np.ndarray) -> list[np.ndarray]:
    """Exact top-20 per user (float64 scores, seen items removed, ties by row)."""
    from service.ranking import exact_scorer

    vectors = model.index.vectors
    tops = []
    for start in range(0, len(users), 50):
        block = users[start : start + 50]
        scores = (model.queries[block] @ vectors.T).astype(np.float64)
        for row, u in zip(scores, block, strict=True):
            row[model.excluded_rows(int(u), f"u{u}")] = -np.inf
            cand = np.argpartition(-row, 64)[:64]  # float32 pre-selection, then exact order
            exact = exact_scorer(vectors, model.queries[int(u)])(cand)
            tops.append(cand[np.lexsort((cand, -exact))][:K])
    return tops


def ann_sweep(model: Any, users: np.ndarray, truth: list[np.ndarray]) -> list[dict[str, Any]]:
    """Recall and cost of the raw ANN search (pool = 128 + seen) for nearby parameters."""
    import dataclasses

    from service.index import ItemIndex
    from service.settings import IndexKind, IvfStore

    rows = []
    index = model.index
    if index.params.kind is IndexKind.IVF:
        store = index.params.ivf_store.value
        for nprobe in (4, 8, 12, 16, 24, 32):
            params = dataclasses.replace(index.params, ivf_nprobe=nprobe)
            probe = ItemIndex(index.index, params, index.vectors, on_gpu=False)
            point = _sweep_point(model, probe, users, truth)
            rows.append({"index": "ivf", "nprobe": nprobe, "store": store, **point})
        # the other vector store at the default nprobe, side by side with the one served
        other = IvfStore.FLAT if index.params.ivf_store is IvfStore.FP16 else IvfStore.FP16
        alt = ItemIndex.build(index.vectors, dataclasses.replace(index.params, ivf_store=other))
        for probe in (index, alt):
            point = _sweep_point(model, probe, users, truth)
            rows.append(
                {
                    "index": "ivf",
                    "nprobe": probe.params.ivf_nprobe,
                    "store": probe.params.ivf_store.value,
                    "side_by_side": True,
                    **point,
                }
            )
    return rows


def _sweep_point(model: Any, index: Any, users: np.ndarray, truth: list) -> dict[str, float]:
    hits, costs = 0, []
    for u, best in zip(users, truth, strict=True):
        seen = model.excluded_rows(int(u), f"u{u}")
        q = model.queries[int(u)]
        t0 = time.perf_counter()
        cand = index.search(q, 128 + seen.size)
        costs.append(time.perf_counter() - t0)
        cand = cand[~np.isin(cand, seen)]
        top = cand[np.argsort(-(index.vectors[cand] @ q))[:K]]
        hits += len(set(top.tolist()) & set(best.tolist()))
    return {
        "recall_at_20": hits / (K * len(users)),
        "search_p50_ms": float(np.median(costs) * 1e3),
        "search_p99_ms": float(np.percentile(costs, 99) * 1e3),
    }


def hnsw_point(bundle: Path, work: Path, users_n: int = 300) -> list[dict[str, Any]]:
    """HNSW (M=32, efConstruction=40) on the same bundle: recall and cost for some efSearch."""
    import dataclasses

    from service.index import ItemIndex, set_faiss_threads
    from service.live import LiveModel
    from service.settings import Settings

    settings = Settings(ann_kind="hnsw", ann_threshold_items=0, index_cache_dir=work / "hnsw")
    set_faiss_threads(2)  # build with both cores; the index is cached under --work
    t0 = time.perf_counter()
    model = LiveModel.load(version="hnsw", bundle_path=bundle, settings=settings, db=None)
    build_s = time.perf_counter() - t0
    set_faiss_threads(1)
    users = np.random.default_rng(1).choice(model.bundle.n_users, users_n, replace=False)
    truth = exact_top(model, users)
    rows = []
    for ef in (64, 128, 256, 512):
        params = dataclasses.replace(model.index.params, ef_search=ef)
        probe = ItemIndex(model.index.index, params, model.index.vectors, on_gpu=False)
        rows.append({"index": "hnsw", "ef_search": ef, **_sweep_point(model, probe, users, truth)})
    rows[0]["load_or_build_s"] = build_s
    return rows


# -- report ------------------------------------------------------------------------------------
def write_report(result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "serve_load.md").write_text(markdown(result))
    with contextlib.suppress(ImportError):
        plot(result)


def _params(quality: dict[str, Any]) -> str:
    p = quality["params"]
    if quality["index"] == "ivf":
        return f"{p['ivf_lists']} lists, nprobe {p['ivf_nprobe']}"
    if quality["index"] == "hnsw":
        return f"M {p['hnsw_m']}, efConstruction {p['ef_construction']}, efSearch {p['ef_search']}"
    return "exact"


def _fmt_run(r: dict[str, Any]) -> str:
    return f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"


def markdown(result: dict[str, Any]) -> str:
    """The human-readable report: targets first, then every measurement."""
    m, cfg = result["machine"], result["settings"]
    runs = {r["n_items"]: r for r in result["runs"]}
    lines = [
        "# Serving benchmark (`bench/serve_load.py`)",
        "",
        f"Run {result['started']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, "
        f"FAISS {m['faiss']}, FastAPI {m['fastapi']}, uvicorn {m['uvicorn']}, {m['wrk']}.",
        f"One uvicorn worker ({cfg['uvicorn']}), response cache {cfg['cache']}, k={cfg['k']}, "
        f"explain=true, exclude_seen=true; wrk: {cfg['wrk']}, {cfg['duration_s']:g} s per run "
        f"after {cfg['warmup_s']:g} s of warm-up. Total wall time {result['wall_s'] / 60:.1f} min.",
        "",
        "**The machine is shared**: 2 cores for the server, wrk and other engineers' jobs "
        "(trainings, test suites) running at the same time. Load averages during each size are "
        "listed below; absolute numbers move with that load, the fraction of the floor (same "
        "app, same run, same encoder, no ranking) much less.",
        "",
        "## Targets (issue 3)",
        "",
        "| target | measured | fraction of floor | met |",
        "|---|---|---|---|",
    ]

    def row(label: str, value: str, frac: str, ok: bool | None) -> None:
        mark = "n/a" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {label} | {value} | {frac} | {mark} |")

    if 100_000 in runs and "load" in runs[100_000]:
        load = runs[100_000]["load"]
        r32, f32 = load["rec_c32"], load["floor_c32"]
        row(
            "100k items: >= 1,500 req/s at 32 connections, one worker",
            f"{r32['rps']:,.0f} req/s",
            f"{r32['rps'] / f32['rps']:.2f} of {f32['rps']:,.0f} req/s",
            r32["rps"] >= TARGETS["rps_32_at_100k"],
        )
        r1, f1 = load["rec_c1"], load["floor_c1"]
        row(
            "100k items: p99 < 5 ms at 1 connection",
            f"p99 {r1['p99_ms']:.2f} ms (p50 {r1['p50_ms']:.2f})",
            f"floor p99 {f1['p99_ms']:.2f} ms",
            r1["p99_ms"] < TARGETS["p99_ms_1_at_100k"],
        )
    if 1_000_000 in runs:
        big = runs[1_000_000]
        q = big["quality"]
        row(
            "1M items: recall@20 >= 0.98 against exact search",
            f"{q['recall_at_20']:.4f} ({q['index']}, {_params(q)})",
            "",
            q["recall_at_20"] >= TARGETS["recall_at_1m"],
        )
        if "load" in big:
            r1, f1 = big["load"]["rec_c1"], big["load"]["floor_c1"]
            row(
                "1M items: p99 < 10 ms at 1 connection",
                f"p99 {r1['p99_ms']:.2f} ms (p50 {r1['p50_ms']:.2f})",
                f"floor p99 {f1['p99_ms']:.2f} ms",
                r1["p99_ms"] < TARGETS["p99_ms_1_at_1m"],
            )
    lines += [
        "",
        "## Throughput and latency",
        "",
        "| items | index | conns | floor (`/_floor`) | recommendations | rec/floor req/s |"
        " load avg (1 min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in sorted(runs.items()):
        if "load" not in r:
            continue
        for conns in (1, 32):
            rec, flo = r["load"][f"rec_c{conns}"], r["load"][f"floor_c{conns}"]
            lines.append(
                f"| {n:,} | {r['quality']['index']} | {conns} | {_fmt_run(flo)} | {_fmt_run(rec)}"
                f" | {rec['rps'] / flo['rps']:.2f} | {r['loadavg_before'][0]:.1f} -> "
                f"{r['loadavg_after'][0]:.1f} |"
            )
    errors = sum(x["errors"] for r in runs.values() for x in r.get("load", {}).values())
    lines += ["", f"Failed or non-2xx responses over all runs: {errors}.", ""]
    lines += [
        "## Index quality (same ranking code as the API, 300 random users, seen items removed)",
        "",
        "| items | index | parameters | recall@20 vs exact | ranking p50 / p99 (in process) |",
        "|---|---|---|---|---|",
    ]
    for n, r in sorted(runs.items()):
        q = r["quality"]
        lines.append(
            f"| {n:,} | {q['index']} | {_params(q)} | {q['recall_at_20']:.4f} | "
            f"{q['rank_p50_ms']:.2f} / {q['rank_p99_ms']:.2f} ms |"
        )
    sweeps = [(n, x) for n, r in sorted(runs.items()) for x in r["quality"].get("sweep", [])]
    sweeps += [(n, x) for n, r in sorted(runs.items()) for x in r.get("hnsw", [])]
    if sweeps:
        lines += [
            "",
            "### ANN alternatives (raw index search, first pool of 128 + seen items, then exact "
            "re-scoring)",
            "",
            "| items | index | setting | recall@20 | search p50 / p99 |",
            "|---|---|---|---|---|",
        ]
        for n, x in sweeps:
            if "nprobe" in x:
                setting = f"nprobe={x['nprobe']}, {x.get('store', 'flat')}"
                setting += " (store A/B)" if x.get("side_by_side") else ""
            else:
                setting = f"efSearch={x['ef_search']}"
            lines.append(
                f"| {n:,} | {x['index']} | {setting} | {x['recall_at_20']:.4f} | "
                f"{x['search_p50_ms']:.2f} / {x['search_p99_ms']:.2f} ms |"
            )
    lines += [
        "",
        "## Set-up costs",
        "",
        "| items | register (verify + SQL upsert) | activate (load + index) | index file reused |",
        "|---|---|---|---|",
    ]
    for n, r in sorted(runs.items()):
        st = r["setup"]
        lines.append(
            f"| {n:,} | {st['register_s']:.1f} s | {st['activate_s']:.1f} s | "
            f"{st['index_was_cached']} |"
        )
    lines += ["", "## What the defaults come from", ""]
    lines += notes(runs)
    lines += ["", "Raw numbers: `serve_load.json`; plot: `serve_load.png`.", ""]
    return "\n".join(lines)


def notes(runs: dict[int, dict[str, Any]]) -> list[str]:
    """The reasoning behind the index defaults, with this run's figures."""

    def sweep(n: int, key: str, value: int) -> dict[str, Any] | None:
        rows = runs.get(n, {}).get("quality", {}).get("sweep", []) + runs.get(n, {}).get("hnsw", [])
        return next((x for x in rows if x.get(key) == value), None)

    out = [
        "- Flat (exact) below `MARGO_ANN_THRESHOLD_ITEMS` = 20,000 items: at 10k items one "
        "exact search is as cheap as an ANN probe and recall is 1.",
        "- Above it IVF (inner product, sqrt(n) lists) with `MARGO_IVF_NPROBE` = 12: the "
        "smallest setting of the sweep whose recall@20 at 1M items clears 0.98 with a margin; "
        "8 lists fall short and 16 cost a third more per search.",
    ]
    for n in sorted(runs):
        ab = [x for x in runs[n].get("quality", {}).get("sweep", []) if x.get("side_by_side")]
        if len(ab) == 2:
            a, b = sorted(ab, key=lambda x: x["store"])  # flat, fp16
            out.append(
                f"- `MARGO_IVF_STORE` at {n:,} items, measured side by side: fp16 search p50 "
                f"{b['search_p50_ms']:.3f} ms vs float32 {a['search_p50_ms']:.3f} ms "
                f"({b['search_p50_ms'] / a['search_p50_ms']:.2f}x), recall@20 "
                f"{b['recall_at_20']:.4f} vs {a['recall_at_20']:.4f}."
            )
    h = sweep(100_000, "ef_search", 512)
    i = sweep(100_000, "nprobe", 12)
    if h and i:
        out.append(
            f"- HNSW (M=32, efConstruction=40, inner product) stalls at recall@20 "
            f"{h['recall_at_20']:.3f} at 100k items even with efSearch=512 "
            f"({h['search_p50_ms']:.2f} ms), against {i['recall_at_20']:.3f} for IVF nprobe=12 "
            f"({i['search_p50_ms']:.2f} ms): users mix clusters, their query points between them, "
            "and the greedy graph walk stays in one. It remains available "
            "(`MARGO_ANN_KIND=hnsw`)."
        )
    r100 = runs.get(100_000)
    if r100 and "load" in r100:
        per_req = 1e3 / r100["load"]["rec_c32"]["rps"]
        floor = 1e3 / r100["load"]["floor_c32"]["rps"]
        out.append(
            f"- Where a request goes at 100k items (32 connections): {per_req:.2f} ms of server "
            f"time per request, {floor:.2f} ms of it the HTTP + JSON floor; the ranking itself "
            f"(index search, exact re-scoring, filters, explanations) is the rest; in process "
            f"the ranking alone takes {r100['quality']['rank_p50_ms']:.2f} ms (p50) before its "
            "explanations. The throughput target needs that near 0.4 ms on one core."
        )
    return out


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r for r in result["runs"] if "load" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, conns in zip(axes, (1, 32), strict=True):
        labels = [f"{r['n_items'] // 1000}k" for r in sizes]
        rec = [r["load"][f"rec_c{conns}"]["rps"] for r in sizes]
        flo = [r["load"][f"floor_c{conns}"]["rps"] for r in sizes]
        x = np.arange(len(labels))
        ax.bar(x - 0.2, flo, 0.4, label="floor (same-size JSON)", color="#bbb")
        ax.bar(x + 0.2, rec, 0.4, label="recommendations", color="#3a7")
        ax.set_xticks(x, labels)
        ax.set_title(f"{conns} connection{'s' if conns > 1 else ''}")
        ax.set_ylabel("requests/s")
        if conns == 32:
            ax.axhline(TARGETS["rps_32_at_100k"], ls="--", color="r", lw=1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "serve_load.png", dpi=110)


# -- main ----------------------------------------------------------------------------------------
def bench_size(n_items: int, args: argparse.Namespace) -> dict[str, Any]:
    work: Path = args.work
    print(f"== {n_items} items", flush=True)
    bundle = ensure_bundle(work, n_items)
    run: dict[str, Any] = {"n_items": n_items, "n_users": USERS, "bundle": str(bundle)}
    run["setup"] = prepare_db(work, bundle, n_items)
    print(f"  setup {run['setup']}", flush=True)
    port = free_port()
    proc = start_server(env_for(work, n_items), port)
    rec = f"/users/{{user}}/recommendations?k={K}&explain=true"
    run["load"] = {}
    try:
        with quiet_machine(args.slots, args.hold_slots, args.slot_wait) as held:
            run["held_bench_slots"] = held
            run["loadavg_before"] = loadavg()
            for conns in (1, 32):
                for name, path in (("floor", "/_floor"), ("rec", rec)):
                    run_wrk(path, port, conns, args.warmup, work)
                    r = run_wrk(path, port, conns, args.duration, work)
                    run["load"][f"{name}_c{conns}"] = r
                    if r["errors"]:  # a throughput of error pages is no result
                        raise RuntimeError(f"{name} c={conns}: {r['errors']} failed requests")
                    print(
                        f"  {name:5} c={conns:2}: {_fmt_run(r)}, errors {r['errors']}", flush=True
                    )
            run["loadavg_after"] = loadavg()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    run["quality"] = index_quality(bundle)
    q = run["quality"]
    print(f"  {q['index']} recall@20 {q['recall_at_20']:.4f}  rank p50 {q['rank_p50_ms']:.2f} ms",
          flush=True)  # fmt: skip
    if n_items in args.hnsw_sizes:
        run["hnsw"] = hnsw_point(bundle, work)
        for row in run["hnsw"]:
            print(f"  hnsw ef={row['ef_search']}: recall {row['recall_at_20']:.4f}", flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/margo-bench/serve"))
    parser.add_argument(
        "--hnsw-sizes", default="100000", help="sizes to also measure HNSW on ('' = none)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the .md and .png from the .json"
    )
    parser.add_argument(
        "--slots",
        type=Path,
        default=Path("/tmp/margo-bench/slots"),
        help="training-slot locks of the other bench scripts (bench/common.py)",
    )
    parser.add_argument("--hold-slots", type=int, default=2, help="slots to hold while measuring")
    parser.add_argument("--slot-wait", type=float, default=300.0, help="max seconds to wait")
    args = parser.parse_args()
    args.hnsw_sizes = {int(s) for s in args.hnsw_sizes.split(",") if s}
    if args.render:
        write_report(json.loads((RESULTS / "serve_load.json").read_text()))
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "k": K,
            "uvicorn": "1 worker, uvloop, httptools",
            "cache": "off",
            "wrk": "1 thread, random user per request",
        },
        "runs": [bench_size(int(n), args) for n in args.sizes.split(",") if n],
    }
    result["wall_s"] = time.time() - started
    if not args.no_write:
        write_report(result)
        print(f"wrote {RESULTS / 'serve_load.md'}")


if __name__ == "__main__":
    main()
