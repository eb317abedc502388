"""Serving benchmark: wrk against ``margo``'s API (public CLI set-up, public app factory, one uvicorn
worker) on synthetic bundles of 10k/100k/1M items (bench/synth_bundle.py): req/s and p50/p99 of
uncached recommendations and of the HTTP + JSON floor, recall@20 of the API's answers against exact
search, and the ANN alternatives. ``--baseline PATH|COMMIT`` serves another checkout (or a commit of
this repository) and this tree alternately into serve_load_vs_baseline.{json,md}.

    .venv/bin/python -m bench.serve_load [--sizes 10000 --duration 3 | --quick]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from starlette.responses import Response
from starlette.routing import Route

from bench import harness as H

NAME = "serve_load"
SIZES = (10_000, 100_000, 1_000_000)
USERS = 20_000
K = 20
REC = f"/users/{{user}}/recommendations?k={K}&explain=true"
TARGETS = {"rps_32_at_100k": 1500.0, "p99_ms_1_at_100k": 5.0, "recall_at_1m": 0.98, "p99_ms_1_at_1m": 10.0}
FLOOR_ENV = "BENCH_FLOOR_FILE"  # where the server under test finds the floor's payload


def bench_app() -> Any:
    """``create_app()`` plus ``GET /_floor``: a real k=20 payload (BENCH_FLOOR_FILE, read once)
    re-encoded per request by a plain Starlette route, like the recommendation route."""
    from service.app import create_app

    app, payload = create_app(), {}

    async def floor(request: Any) -> Response:
        if not payload:
            payload.update(json.loads(Path(os.environ.get(FLOOR_ENV, "/nonexistent")).read_text()))
        return Response(orjson.dumps(payload), media_type="application/json")

    app.router.routes.insert(0, Route("/_floor", floor, methods=["GET"]))
    return app


# -- set-up and servers (any checkout: ``tree``) ----------------------------------------------------
def ensure_bundle(work: Path, n_items: int, users: int = USERS, tree: Path = H.REPO) -> Path:
    """The synthetic bundle, written by ``tree``'s own bench.synth_bundle (its bundle format)."""
    path = work / "bundles" / f"items-{n_items}-users-{users}" / ("this" if tree == H.REPO else tree.name)
    if not (path / "manifest.json").is_file():
        print(f"  generating {path} ...", flush=True)
        cmd = [sys.executable, "-m", "bench.synth_bundle", str(path), "--items", str(n_items), "--users", str(users)]
        subprocess.run(cmd, cwd=tree, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                       check=True, capture_output=True)
    return path


def service_env(tree: Path, db: Path, work: Path, **settings: str) -> dict[str, str]:
    """The environment of ``tree``'s service: its code first, this bench package after it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARGO_", "PROMETHEUS_"))}
    (work / "empty-model-dir").mkdir(parents=True, exist_ok=True)
    env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys([str(tree), str(H.REPO)])), OMP_NUM_THREADS="1",
               MARGO_DATABASE_URL=f"sqlite:///{db}", MARGO_MODEL_DIR=str(work / "empty-model-dir"),
               MARGO_CACHE_ENABLED="false", MARGO_PUBLIC_READS="true",  # anonymous uncached reads
               **{f"MARGO_{k.upper()}": v for k, v in settings.items()})
    return env


def setup_db(tree: Path, db: Path, bundle: Path, work: Path) -> dict[str, Any]:
    """A fresh SQLite database with ``bundle`` registered and active, through ``tree``'s CLI."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = service_env(tree, db, work, faiss_threads="2")  # the index build may use both cores
    cached, t0 = (bundle / "index").is_dir() and any((bundle / "index").glob("*.faiss")), time.perf_counter()
    for argv in (["db", "upgrade"], ["models", "register", str(bundle), "--activate"]):
        H.margo(argv, env, tree)
    return {"register_activate_s": time.perf_counter() - t0, "index_was_cached": cached}


@contextlib.contextmanager
def serve(tree: Path, env: dict[str, str], work: Path, *, log_config: Path | None = None,
          log_file: Path | None = None) -> Iterator[tuple[int, float]]:
    """``tree``'s API (``bench_app``) in one uvicorn worker: yields (port, seconds to ready)."""
    port = H.free_port()
    floor, url = work / f"floor-{port}.json", f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "uvicorn", "bench.serve_load:bench_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
           *(["--log-config", str(log_config)] if log_config else ["--log-level", "warning"])]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log_file, "w")) if log_file else None  # noqa: SIM115
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**env, FLOOR_ENV: str(floor)}, cwd=tree, stdout=out, stderr=out)
        try:  # until ready, or exited
            H.wait_for(lambda: proc.poll() is not None
                       or httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 600)
            if proc.poll() is not None:
                raise RuntimeError(f"server of {tree} exited with {proc.returncode}")
            ready_s = time.perf_counter() - t0
            floor.write_text(httpx.get(url + REC.replace("{user}", "u0"), timeout=30).raise_for_status().text)
            yield port, ready_s  # the floor answers with that real response
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            floor.unlink(missing_ok=True)


def run_wrk(url_path: str, port: int, conns: int, duration: float, work: Path, users: int = USERS) -> dict[str, Any]:
    lua = (H.REPO / "bench" / "templates" / "wrk.lua").read_text()  # reports its summary as one JSON line
    script = work / "wrk.lua"
    script.write_text(lua.replace("PATH", json.dumps(url_path)).replace("USERS", str(users)))
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if (match := re.search(r"^WRK (\{.*\})$", out, re.M)) is None:
        raise RuntimeError(f"no wrk summary in:\n{out}")
    r = json.loads(match.group(1))
    return {"connections": conns, "requests": r["requests"], "errors": r["errors"] + r["non2xx"],
            "rps": r["requests"] / (r["duration_us"] / 1e6), **{f"{k}_ms": r[f"{k}_us"] / 1e3 for k in ("p50", "p90", "p99", "mean")}}


def load_pass(port: int, args: Any, work: Path) -> dict[str, Any]:
    """floor and recommendations at 1 and 32 connections, each after a warm-up run."""
    out: dict[str, Any] = {}
    for conns in (1, 32):
        for name, path in (("floor", "/_floor"), ("rec", REC)):
            run_wrk(path, port, conns, args.warmup, work, args.users)
            out[f"{name}_c{conns}"] = r = run_wrk(path, port, conns, args.duration, work, args.users)
            if r["errors"]:  # a throughput of error pages is no result
                raise RuntimeError(f"{name} c={conns}: {r['errors']} failed requests")
            print(f"  {name:5} c={conns:2}: {_fmt_run(r)}", flush=True)
    return out


def alternate(variants: dict[str, dict[str, Any]], args: Any, work: Path) -> tuple[bool, list[dict]]:
    """One load pass per variant (``tree``, ``env``, optional ``log_config``), ``args.rounds``
    times in ABBA order, every bench training slot held."""
    rows = []
    with H.hold_slots(args.workdir / "slots", args.max_train, timeout=args.slot_wait) as held:
        for i, tag in H.abba(args.rounds, list(variants)):
            print(f"== round {i}, {tag}", flush=True)
            v, log_file = variants[tag], work / f"server-{tag.replace(' ', '-')}.log"
            with serve(v["tree"], v["env"], work, log_config=v.get("log_config"), log_file=log_file) as (port, _):
                rows.append({"round": i, "tree": tag, "loadavg_before": H.loadavg(), **load_pass(port, args, work)})
            rows[-1]["log_lines"] = len(log_file.read_text().splitlines())
    return held, rows


# -- recall and the ANN alternatives --------------------------------------------------------------------
def exact_top(bundle: Any, users: np.ndarray) -> list[np.ndarray]:
    """Exact top-20 per user (float64 re-scoring, seen items removed, ties by row)."""
    q, v, tops = bundle.query_vectors(), bundle.item_vectors(), []
    for start in range(0, len(users), 50):
        block = users[start : start + 50]
        for row, u in zip(q[block] @ v.T, block, strict=True):
            row[bundle.seen_items(int(u))] = -np.inf
            cand = np.argpartition(-row, 64)[:64]  # float32 pre-selection, then exact order
            exact = v[cand].astype(np.float64) @ q[int(u)].astype(np.float64)
            tops.append(cand[np.lexsort((cand, -exact))][:K])
    return tops


def recall(users: np.ndarray, truth: list[np.ndarray], top: Callable[[int], Any], prefix: str,
           after: Callable[[int, Any], Any] = lambda u, got: got) -> dict[str, float]:
    """recall@20 of ``after(user, top(user))`` (item rows) against ``truth``; p50/p99 of ``top``."""
    hits, costs = 0, []
    for u, best in zip(users, truth, strict=True):
        t0 = time.perf_counter()
        got = top(int(u))
        costs.append(time.perf_counter() - t0)
        hits += len(set(np.asarray(after(int(u), got)).tolist()) & set(best.tolist()))
    return {"recall_at_20": hits / (K * len(users)), f"{prefix}_p50_ms": float(np.median(costs) * 1e3),
            f"{prefix}_p99_ms": float(np.percentile(costs, 99) * 1e3)}


def http_recall(port: int, bundle: Any, users: np.ndarray, truth: list[np.ndarray]) -> dict[str, float]:
    """The service's answers (k=20, no explanations), one client."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        return recall(users, truth, lambda u: client.get(f"/users/u{u}/recommendations", params={"k": K}), "http",
                      lambda u, r: [bundle.item_index(x["item_id"]) for x in r.raise_for_status().json()["items"]])


def ann_sweep(bundle: Any, users: np.ndarray, truth: list[np.ndarray], hnsw: bool) -> tuple[dict, list[dict]]:
    """The index the service picks, and the recall and cost of the raw ANN search (pool = 128 +
    seen, then exact re-scoring; the timed part is the search) around its parameters."""
    from service.index import IndexParams, ItemIndex, set_faiss_threads
    from service.settings import IndexKind, IvfStore, Settings

    vectors, queries, rows = bundle.item_vectors(), bundle.query_vectors(), []
    pool = {int(u): 128 + bundle.seen_items(int(u)).size for u in users}  # 128 + seen, counted outside the timer
    served = IndexParams.choose(bundle.n_items, Settings())

    def rescored(u: int, cand: np.ndarray) -> np.ndarray:  # seen items out, exact order
        cand = cand[~np.isin(cand, bundle.seen_items(u))]
        return cand[np.argsort(-(vectors[cand] @ queries[u]))[:K]]

    def built(params: Any) -> Any:
        set_faiss_threads(2)  # build with both cores, search with one as the server does
        index = ItemIndex.build(vectors, params)
        set_faiss_threads(1)
        return index

    def point(index: Any, params: Any = None, /, **extra: Any) -> None:
        index = index if params is None else ItemIndex(index.index, params, index.vectors, on_gpu=False)
        rows.append({**extra, **recall(users, truth, lambda u: index.search(queries[u], pool[u]), "search", rescored)})

    if served.kind is IndexKind.IVF:
        index = built(served)
        for nprobe in (4, 8, 12, 16, 24, 32):
            point(index, replace(served, ivf_nprobe=nprobe), index="ivf", nprobe=nprobe, store=served.ivf_store.value)
        # the other vector store at the default nprobe, side by side with the one served
        other = IvfStore.FLAT if served.ivf_store is IvfStore.FP16 else IvfStore.FP16
        for probe in (index, built(replace(served, ivf_store=other))):
            point(probe, index="ivf", nprobe=probe.params.ivf_nprobe, store=probe.params.ivf_store.value, side_by_side=True)
    if hnsw:  # M=32, efConstruction=40
        t0 = time.perf_counter()
        index = built(IndexParams(IndexKind.HNSW, hnsw_m=32, ef_construction=40))
        build_s = time.perf_counter() - t0
        for ef in (64, 128, 256, 512):
            point(index, replace(index.params, ef_search=ef), index="hnsw", ef_search=ef)
        rows[-4]["load_or_build_s"] = build_s
    return {"index": served.kind.value, "params": {k: getattr(v, "value", v) for k, v in vars(served).items() if k != "kind"}}, rows


# -- one size ---------------------------------------------------------------------------------------------
def bench_size(n_items: int, args: Any, work: Path) -> dict[str, Any]:
    from trainer.bundle import load_bundle

    print(f"== {n_items} items", flush=True)
    bundle_path, db = ensure_bundle(work, n_items, args.users), work / f"serve-{n_items}.db"
    run: dict[str, Any] = {"n_items": n_items, "n_users": args.users, "bundle": str(bundle_path),
                           "setup": setup_db(H.REPO, db, bundle_path, work)}
    bundle = load_bundle(bundle_path, mmap=True)
    users = np.random.default_rng(1).choice(bundle.n_users, args.recall_users, replace=False)
    truth = exact_top(bundle, users)
    with serve(H.REPO, service_env(H.REPO, db, work), work) as (port, ready_s):
        run["setup"]["server_ready_s"] = ready_s
        with H.hold_slots(args.workdir / "slots", args.max_train, timeout=args.slot_wait) as held:
            run["held_bench_slots"], run["loadavg_before"] = held, H.loadavg()
            run["load"] = load_pass(port, args, work)
            run["loadavg_after"] = H.loadavg()
        http = http_recall(port, bundle, users, truth)
    print(f"  recall@20 {http['recall_at_20']:.4f}, HTTP p50 {http['http_p50_ms']:.2f} ms", flush=True)
    served, sweep = ann_sweep(bundle, users, truth, hnsw=n_items in args.hnsw_sizes)
    run["quality"] = {**served, **http, "sweep": sweep}
    return run


def baseline_size(n_items: int, trees: dict[str, Path], args: Any, work: Path) -> dict[str, Any]:
    """The same load against ``--baseline`` and this tree, alternating, ``--rounds`` times."""
    bundle = ensure_bundle(work, n_items, args.users, trees["baseline"])  # both read the older format
    dbs = {tag: work / f"serve-{tag.replace(' ', '-')}-{n_items}.db" for tag in trees}
    out: dict[str, Any] = {"n_items": n_items, "setup": {t: setup_db(tree, dbs[t], bundle, work) for t, tree in trees.items()}}
    variants = {tag: {"tree": tree, "env": service_env(tree, dbs[tag], work)} for tag, tree in trees.items()}
    out["held_bench_slots"], out["rounds"] = alternate(variants, args, work)
    return out


# -- report (older results lack the HTTP latencies and the set-up split of today's: a dash) ------------
def _params(q: dict[str, Any]) -> str:
    p = q["params"]
    return {"ivf": f"{p['ivf_lists']} lists, nprobe {p['ivf_nprobe']}",
            "hnsw": f"M {p['hnsw_m']}, efConstruction {p['ef_construction']}, efSearch {p['ef_search']}"}.get(q["index"], "exact")


def _fmt_run(r: dict[str, Any]) -> str:
    return f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"


def _n(d: dict[str, Any], key: str, fmt: str = ".2f") -> str:
    return "–" if d.get(key) is None else format(d[key], fmt)


def markdown(result: dict[str, Any]) -> str:
    m, cfg, lines = result["machine"], result["settings"], []
    runs = {r["n_items"]: r for r in result["runs"]}
    items = sorted(runs.items())

    def target(label: str, r: dict, f: dict, frac: str | None, ok: bool, value: str = "") -> None:
        value = value or f"p99 {r['p99_ms']:.2f} ms (p50 {r['p50_ms']:.2f})"
        frac = f"floor p99 {f['p99_ms']:.2f} ms" if frac is None else frac
        lines.append(f"\n| {label} | {value} | {frac} | {'yes' if ok else '**no**'} |")

    if r100 := runs.get(100_000):
        (r32, f32, r1, f1) = (r100["load"][k] for k in ("rec_c32", "floor_c32", "rec_c1", "floor_c1"))
        target("100k items: >= 1,500 req/s at 32 connections, one worker", r32, f32, f"{r32['rps'] / f32['rps']:.2f} of "
               f"{f32['rps']:,.0f} req/s", r32["rps"] >= TARGETS["rps_32_at_100k"], f"{r32['rps']:,.0f} req/s")
        target("100k items: p99 < 5 ms at 1 connection", r1, f1, None, r1["p99_ms"] < TARGETS["p99_ms_1_at_100k"])
    if r1m := runs.get(1_000_000):
        q, r1, f1 = r1m["quality"], r1m["load"]["rec_c1"], r1m["load"]["floor_c1"]
        target("1M items: recall@20 >= 0.98 against exact search", r1, f1, "", q["recall_at_20"] >= TARGETS["recall_at_1m"],
               f"{q['recall_at_20']:.4f} ({q['index']}, {_params(q)})")
        target("1M items: p99 < 10 ms at 1 connection", r1, f1, None, r1["p99_ms"] < TARGETS["p99_ms_1_at_1m"])
    qualities = [(n, r["quality"]) for n, r in items]
    sweeps = [(n, x) for n, q in qualities for x in q["sweep"]]
    ann = H.md_table(["items", "index", "setting", "recall@20", "search p50 / p99"], [
        [f"{n:,}", x["index"],
         f"nprobe={x['nprobe']}, {x['store']}" + (" (store A/B)" if x.get("side_by_side") else "")
         if "nprobe" in x else f"efSearch={x['ef_search']}", f"{x['recall_at_20']:.4f}",
         f"{x['search_p50_ms']:.2f} / {x['search_p99_ms']:.2f} ms"] for n, x in sweeps])
    load = [(n, c, r["load"][f"floor_c{c}"], r["load"][f"rec_c{c}"], r) for n, r in items for c in (1, 32)]
    throughput = H.md_table(
        ["items", "index", "conns", "floor (`/_floor`)", "recommendations", "rec/floor req/s",
         "load avg (1 min)"],
        [[f"{n:,}", r["quality"]["index"], c, _fmt_run(f), _fmt_run(x), f"{x['rps'] / f['rps']:.2f}",
          f"{r['loadavg_before'][0]:.1f} -> {r['loadavg_after'][0]:.1f}"] for n, c, f, x, r in load])
    quality = H.md_table(["items", "index", "parameters", "recall@20 vs exact",
                          "request p50 / p99 (HTTP, 1 client, k=20 without explanations)"],
                         [[f"{n:,}", q["index"], _params(q), f"{q['recall_at_20']:.4f}",
                           f"{_n(q, 'http_p50_ms')} / {_n(q, 'http_p99_ms')} ms"] for n, q in qualities])
    setup = H.md_table(["items", "`margo db upgrade` + `models register --activate` (processes)",
                        "server start to ready", "index file reused"],
                       [[f"{n:,}", f"{_n(r['setup'], 'register_activate_s', '.1f')} s",
                         f"{_n(r['setup'], 'server_ready_s', '.1f')} s", r["setup"]["index_was_cached"]] for n, r in items])
    libs = {k: m.get(k, "?") for k in ("faiss-cpu", "fastapi", "uvicorn")}
    return H.template(NAME, "report", m=m, cfg=cfg, libs=libs, wrk=cfg.get("wrk_version", m.get("wrk", "?")),
                      wall=result["wall_s"] / 60, targets="".join(lines),
                      recall_users=cfg.get("recall_users", 300),
                      quick=" **QUICK SMOKE RUN**: not a measurement." if cfg.get("quick") else "",
                      throughput=throughput, quality=quality, setup=setup,
                      errors=sum(x["errors"] for _, r in items for x in r["load"].values()),
                      ann=H.template(NAME, "ann", table=ann) if sweeps else "",
                      notes="".join(f"\n{x}" for x in notes(runs)))


def notes(runs: dict[int, dict[str, Any]]) -> list[str]:
    """The reasoning behind the index defaults (beyond the template's), with this run's figures."""
    def sweep(n: int, key: str, value: int) -> dict[str, Any] | None:
        return next((x for x in runs.get(n, {}).get("quality", {}).get("sweep", []) if x.get(key) == value), None)

    out = []
    for n in sorted(runs):
        if len(ab := [x for x in runs[n]["quality"]["sweep"] if x.get("side_by_side")]) == 2:
            a, b = sorted(ab, key=lambda x: x["store"])  # flat, fp16
            out.append(H.template(NAME, "store", n=n, a=a, b=b,
                                  ratio=b["search_p50_ms"] / a["search_p50_ms"]))
    if (h := sweep(100_000, "ef_search", 512)) and (i := sweep(100_000, "nprobe", 12)):
        out.append(H.template(NAME, "hnsw", h=h, i=i))
    if r100 := runs.get(100_000):
        per_req, floor = (1e3 / r100["load"][k]["rps"] for k in ("rec_c32", "floor_c32"))
        out.append(H.template(NAME, "where", per_req=per_req, floor=floor,
                              http_p50=_n(r100["quality"], "http_p50_ms")))
    return out


def plot(result: dict[str, Any]) -> dict[str, Any]:
    if (plt := H.pyplot()) is None:
        return {}
    sizes, (fig, axes) = result["runs"], plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(sizes))
    for ax, conns in zip(axes, (1, 32), strict=True):
        for dx, key, label, color in ((-0.2, "floor", "floor (same-size JSON)", "#bbb"), (0.2, "rec", "recommendations", "#3a7")):
            ax.bar(x + dx, [r["load"][f"{key}_c{conns}"]["rps"] for r in sizes], 0.4, label=label, color=color)
        ax.set_xticks(x, [f"{r['n_items'] // 1000}k" for r in sizes])
        ax.set(title=f"{conns} connection{'s' if conns > 1 else ''}", ylabel="requests/s")
        if conns == 32:
            ax.axhline(TARGETS["rps_32_at_100k"], ls="--", color="r", lw=1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return {f"{NAME}.png": fig}


def _vs_floor(r: dict[str, Any]) -> dict[str, float]:  # the baseline summary's figures of one pass
    return {"rps32": r["rec_c32"]["rps"], "p50_1": r["rec_c1"]["p50_ms"],
            "frac": r["rec_c32"]["rps"] / r["floor_c32"]["rps"]}


def baseline_markdown(result: dict[str, Any]) -> str:
    rows, summary = [], []
    for size in result["runs"]:
        rows += [[f"{size['n_items']:,}", r["round"], r["tree"], _fmt_run(r["rec_c32"]), _fmt_run(r["rec_c1"]),
                  f"{r['floor_c32']['rps']:,.0f} req/s", f"{_vs_floor(r)['frac']:.3f}",
                  f"{r['loadavg_before'][0]:.1f}"] for r in size["rounds"]]
        med = H.medians(({r["tree"]: r} for r in size["rounds"]), _vs_floor)
        t, b = med["this tree"], med["baseline"]
        summary.append(H.template(NAME, "summary", n=size["n_items"], rps=t["rps32"] / b["rps32"],
                                  p50=t["p50_1"] / b["p50_1"], t_frac=t["frac"], b_frac=b["frac"]))
    table = H.md_table(["items", "round", "tree", "recommendations c=32", "recommendations c=1", "floor c=32",
                        "rec/floor c=32", "load avg"], rows)
    return H.template(NAME, "baseline", machine=H.machine_md(result["machine"]), baseline=result["baseline"],
                      repo=H.REPO, k=K, commits=result["commits"], cfg=result["settings"], table=table,
                      summary="\n".join(summary))


def main(argv: list[str] | None = None) -> int:
    p = H.parser(__doc__, ("--sizes", ",".join(map(str, SIZES)), None),
                 ("--users", USERS, f"users of the synthetic bundles (default {USERS})"),
                 ("--duration", 10.0, "seconds per wrk run"), ("--warmup", 2.0, None),
                 ("--recall-users", 300, "users whose answers are checked against exact search"),
                 ("--hnsw-sizes", "100000", "sizes to also measure HNSW on ('' = none)"),
                 ("--slot-wait", 300.0, "max seconds to wait for the bench training slots"),
                 ("--rounds", 2, "alternating rounds with --baseline (default 2)"), jobs=1)
    p.add_argument("--baseline", help="another checkout or a commit: serve it and this tree alternately")
    args = H.parse_args(p, argv, sizes="25000", users=2000, duration=1, warmup=1, recall_users=50, hnsw_sizes="25000")
    args.hnsw_sizes = {int(s) for s in args.hnsw_sizes.split(",") if s}
    if args.report_only:
        result = H.stored_report(args, NAME)
        H.write_report(args.results, NAME, result, markdown(result), plot(result))
        return 0
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    (work := args.workdir / "serve").mkdir(parents=True, exist_ok=True)
    started, sizes = time.time(), [int(n) for n in args.sizes.split(",") if n]
    result: dict[str, Any] = {
        "machine": H.machine_info(packages=("faiss-cpu", "fastapi", "uvicorn")),
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "k": K, "uvicorn": "1 worker, uvloop, httptools",
                     "cache": "off", "wrk": "1 thread, random user per request", "recall_users": args.recall_users,
                     "wrk_version": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
                     "rounds": args.rounds, "quick": args.quick}}
    if args.baseline:
        trees, commits = H.versus(args.baseline, work)
        runs = [baseline_size(n, trees, args, work) for n in sizes]
        result.update(baseline=args.baseline, commits=commits, runs=runs, wall_s=time.time() - started)
        H.write_report(args.results, f"{NAME}_vs_baseline", result, baseline_markdown(result), log=print)
    else:
        result.update(runs=[bench_size(n, args, work) for n in sizes], wall_s=time.time() - started)
        H.write_report(args.results, NAME, result, markdown(result), plot(result), log=print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
