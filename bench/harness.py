"""The one harness of the benchmarks: run store and process pool, slot locks, machine notes,
side-by-side helpers and the report writer. Trainer modules are imported where used: a
``--baseline`` child imports this package beside an older checkout's trainer."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import resource
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_WORKDIR = Path("/tmp/margo-bench")
# the shared data sets beside the checkout (../shared/data), or wherever MARGO_BENCH_DATA points
DATA = Path(os.environ.get("MARGO_BENCH_DATA") or REPO.parent / "shared" / "data")
MLSMALL_MMREC = DATA / "mlsmall-mmrec"
ML_LATEST_SMALL = DATA / "ml-latest-small"
CLI = "import sys; from service.cli import main; sys.exit(main())"  # ``margo`` of the checkout on sys.path
POLL_S = 2.0  # seconds between tries for a free training slot
Log = Callable[[str], None]


# -- writing ----------------------------------------------------------------------------------------
def dumps(obj: Any) -> str:
    """JSON of results that may hold numpy numbers and paths."""

    def default(o: Any) -> Any:
        for kind, convert in ((np.integer, int), (np.floating, float), (np.ndarray, np.ndarray.tolist), (Path, str)):
            if isinstance(o, kind):
                return convert(o)
        raise TypeError(f"not JSON serialisable: {type(o)}")

    return json.dumps(obj, indent=2, default=default) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    from trainer.atomic import atomic_write_text
    atomic_write_text(path, dumps(obj))


def pyplot() -> Any | None:
    """matplotlib's pyplot on the file-only Agg backend, or None without matplotlib."""
    with contextlib.suppress(ImportError):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    return None


def write_report(results: Path, name: str, data: dict[str, Any], markdown: str,
                 figures: dict[str, Any] | None = None, log: Log | None = None) -> list[Path]:
    """The one writer of results: ``<name>.json``, ``<name>.md`` and each figure (file name ->
    matplotlib Figure) under ``results``, atomically; returns the paths written (and logs them)."""
    from trainer.atomic import atomic_path, atomic_write_text
    written = [Path(results) / f"{name}.json", Path(results) / f"{name}.md"]
    atomic_write_json(written[0], data)
    atomic_write_text(written[1], markdown.rstrip("\n") + "\n")
    for file_name, fig in (figures or {}).items():
        with atomic_path(Path(results) / file_name) as tmp:
            fig.savefig(tmp, dpi=110)
        written.append(Path(results) / file_name)
        pyplot().close(fig)
    for path in written if log else ():
        log(f"[bench] wrote {path}")
    return written


def template(name: str, section: str, /, **values: Any) -> str:
    """The report prose ``section`` of ``bench/templates/<name>.md`` (from its ``<!-- section -->``
    line to the next marker, the newline before it dropped), ``{field}``s filled from ``values``."""
    text = (REPO / "bench" / "templates" / f"{name}.md").read_text()
    start = text.index(f"<!-- {section} -->\n") + len(f"<!-- {section} -->\n")
    end = text.find("\n<!-- ", start)
    return text[start : end if end >= 0 else len(text) - text.endswith("\n")].format(**values)


def config(name: str) -> dict[str, Any]:
    """The declarative settings of a script (cases, rows, reference figures): bench/configs/<name>.toml."""
    return tomllib.loads((REPO / "bench" / "configs" / f"{name}.toml").read_text())


def stored_report(args: Any, name: str) -> dict[str, Any]:
    """The JSON a script wrote earlier into ``args.results`` (``--report-only``); machine notes of
    the older format (``cores``, ``faiss``, the date beside them) read as today's."""
    data = json.loads((args.results / f"{name}.json").read_text())
    m = data.get("machine", {})
    for old, new in (("cores", "cpu_count"), ("faiss", "faiss-cpu")):
        if old in m:
            m.setdefault(new, m[old])
    m.setdefault("date", data.get("date") or data.get("started", "?"))
    return data


# -- numbers and tables -------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0 for one value), ignoring None and NaN."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def mean_pm(x: tuple[float, float], n: int, digits: int = 4) -> str:
    """A (mean, std) over ``n`` seeds as "m ± s", "m" for one seed, "–" for none."""
    if n == 0 or math.isnan(x[0]):
        return "–"
    return f"{x[0]:.{digits}f} ± {x[1]:.{digits}f}" if n > 1 else f"{x[0]:.{digits}f}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        return f"{x:.4f}" if isinstance(x, float) else str(x).replace("|", "\\|")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(out + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows])


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


# -- machine and checkouts ------------------------------------------------------------------------------
def machine_info(threads: int | None = None, packages: Sequence[str] = ("torch",)) -> dict[str, Any]:
    """Where and how a benchmark ran (package versions from their metadata: nothing imported)."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                    if x.startswith("model name")), cpu)
    versions = {}
    for pkg in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    script = Path(sys.argv[0]).resolve()  # as typed: ``-m bench.<name>`` for a script of this package
    argv = ["-m", f"bench.{script.stem}", *sys.argv[1:]] if script.parent == REPO / "bench" else sys.argv
    return {"date": now(), "host": platform.node(), "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(), **versions, "torch_threads": threads, "loadavg": loadavg(),
            "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *argv])}


def machine_md(info: dict[str, Any], extra: str = "") -> str:
    libs = "".join(f", {k} {info[k]}" for k in ("torch", "faiss-cpu", "fastapi", "uvicorn") if k in info)
    threads = f", torch threads per process: {info['torch_threads']}" if info.get("torch_threads") else ""
    return (f"- machine: {info.get('host', '?')}, {info['cpu']}, {info['cpu_count']} CPU cores; python {info['python']}{libs}"
            f"{threads}\n- date: {info['date']}; load average (1/5/15 min) at start: {info.get('loadavg', '?')}{extra}\n"
            f"- command: `{info.get('command', '?')}`\n")


def git_commit(tree: Path = REPO) -> str:
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=tree, capture_output=True, text=True)
    return out.stdout.strip() or "?"


def margo(argv: Sequence[str], env: dict[str, str], tree: Path = REPO) -> str:
    """The stdout of ``margo *argv`` run by the checkout ``tree`` (its code first in ``env``)."""
    proc = subprocess.run([sys.executable, "-c", CLI, *argv], cwd=tree, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"margo {' '.join(argv)} in {tree} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def tree_env(tree: Path, **extra: str) -> dict[str, str]:
    """The environment of a child ``python -P`` that imports ``trainer`` and ``service`` from
    ``tree`` and ``bench`` from this repository (a link to it in a folder of its own, first)."""
    link = Path(tempfile.gettempdir()) / f"margo-bench-pkg-{hashlib.sha1(str(REPO).encode()).hexdigest()[:8]}"
    if not (link / "bench").exists():
        link.mkdir(exist_ok=True)
        with contextlib.suppress(FileExistsError):
            (link / "bench").symlink_to(REPO / "bench", target_is_directory=True)
    path = os.pathsep.join(dict.fromkeys([str(link), str(tree), str(REPO)]))
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": path, **extra}


def versus(ref: str, work: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The trees "baseline" (``ref``: another checkout, or a commit of this repository exported once
    under the existing folder ``work`` by ``git archive``) and "this tree", and their commits."""
    base, commit, git = Path(ref).resolve(), None, ["git", "-C", str(REPO)]
    if not base.is_dir():
        commit = subprocess.run([*git, "rev-parse", "--short=12", ref], capture_output=True, text=True,
                                check=True).stdout.strip()
        if not (base := Path(work) / f"base-{commit}").is_dir():  # extracted aside, renamed: whole or absent
            archive = subprocess.run([*git, "archive", commit], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp := tempfile.mkdtemp(dir=work)], input=archive, check=True)
            Path(tmp).rename(base)
    commits = {"baseline": commit or git_commit(base), "this tree": git_commit()}
    return {"baseline": base, "this tree": REPO}, commits


def abba(rounds: int, tags: Sequence[str]) -> Iterator[tuple[int, str]]:
    """(round, tag) in ABBA order (every other round reversed): none always goes first."""
    for i in range(rounds):
        for tag in list(tags)[:: -1 if i % 2 else 1]:
            yield i, tag


def medians(rounds: Iterable[dict[str, Any]], value: Callable[[Any], dict[Any, float]]) -> dict[str, dict]:
    """tag -> name -> the median over ``rounds`` (tag -> result) of ``value(result)[name]``."""
    seen: dict[str, dict[Any, list[float]]] = {}
    for tag, result in ((t, r) for rnd in rounds for t, r in rnd.items()):
        for name, v in value(result).items():
            seen.setdefault(tag, {}).setdefault(name, []).append(v)
    return {tag: {name: float(np.median(v)) for name, v in d.items()} for tag, d in seen.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(ok: Callable[[], bool], limit_s: float) -> float:
    """Seconds until ``ok()`` is true (exceptions count as false); raises past ``limit_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        with contextlib.suppress(Exception):
            if ok():
                return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"not ready within {limit_s} s")


# -- slots shared by every benchmark process (one per training run; all of them while timing) -----------
def _slot(slots_dir: Path, i: int) -> FileLock:
    Path(slots_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(Path(slots_dir) / f"slot{i}.lock")


@contextlib.contextmanager
def training_slot(slots_dir: Path, n_slots: int) -> Iterator[int]:
    """Hold one of ``n_slots`` machine-wide slots for the duration of a training run."""
    while True:
        for i in range(n_slots):
            lock = _slot(slots_dir, i)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield i
            finally:
                lock.release()
            return
        time.sleep(POLL_S)


@contextlib.contextmanager
def hold_slots(slots_dir: Path, n: int, *, timeout: float | None = None, log: Log = print) -> Iterator[bool]:
    """Hold all ``n`` slots (no other bench training starts meanwhile), waiting at most
    ``timeout`` seconds (None: for ever); yields whether every slot is held."""
    held: list[FileLock] = []
    t0 = time.monotonic()
    try:
        for i in range(n):
            lock = _slot(slots_dir, i)
            try:
                lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout - (time.monotonic() - t0)))
            except Timeout:
                break
            held.append(lock)
        log(f"[bench] holding {len(held)} of {n} training slots (waited {time.monotonic() - t0:.0f}s)")
        yield len(held) == n
    finally:
        for lock in held:
            lock.release()


# -- processes and configs -------------------------------------------------------------------------------
def process_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` workers, each task in a fresh spawned process (peak RSS and torch state per task)."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), max_tasks_per_child=1)


def isolated(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with process_pool(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def train_config(**fields: Any) -> Any:
    from trainer.config import TrainConfig
    return TrainConfig(**fields).validate()


def ensure_dataset(out: Path, importer: str, *sources: Any, log: Log = print, **kw: Any) -> Path:
    """The dataset bundle at ``out``, imported once by ``trainer.data.<importer>(*sources, out, **kw)``."""
    out = Path(out)
    if not (out / "stats.json").is_file():
        import trainer.data
        t = time.perf_counter()
        getattr(trainer.data, importer)(*sources, out, overwrite=True, progress=False, **kw)
        log(f"[bench] {importer} -> {out} in {time.perf_counter() - t:.0f}s")
    return out


# -- the run store: one JSON per training run under WORKDIR/runs, keyed by what is trained --------------
@dataclass
class Step:
    """One training run: kind "fit" (``trainer.train.fit`` as ``margo train`` runs it), "stage1"
    (the same, keeping the stage-I state) or "branch" (stage II from ``parent``'s saved stage I)."""

    label: str  # row name in the tables, e.g. "margo"
    data: str  # dataset bundle path
    cfg: dict[str, Any]  # TrainConfig fields (modalities included)
    kind: str = "fit"
    parent: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # dataset name, seed, phase ...

    @property
    def key(self) -> str:
        blob = json.dumps([self.kind, self.data, self.cfg, self.parent], sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    @property
    def deps(self) -> list[str]:
        return [self.parent] if self.parent else []


def load_result(runs_dir: Path, key: str) -> dict[str, Any] | None:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        return json.loads((Path(runs_dir) / f"{key}.json").read_text())
    return None


def _softmax_weights(model: Any) -> np.ndarray | None:
    w = getattr(model, "weight_logits", None)
    return None if w is None else w.detach().softmax(-1).cpu().numpy().astype(np.float32)


def run_step(step_d: dict[str, Any], runs_dir: str, slots_dir: str, n_slots: int, threads: int) -> dict[str, Any]:
    """Worker entry point (a fresh process per step): train, write the result JSON, return it."""
    import torch
    torch.set_num_threads(threads)
    from trainer.data import load_dataset
    from trainer.train import fit, stage1_cache_path
    step, runs = Step(**step_d), Path(runs_dir)
    with training_slot(Path(slots_dir), n_slots):
        load, t_wall = loadavg(), time.perf_counter()
        cfg = train_config(**{**step.cfg, "threads": threads})
        data = load_dataset(step.data, cfg.modalities)
        parent, stage1, last_file, last = None, runs / "stage1", runs / f"{step.key}.weights_last.npy", {}
        if step.kind == "branch":  # stage II only: fit loads the parent's best stage-I state from its cache
            if (parent := load_result(runs, step.parent or "")) is None:
                raise RuntimeError(f"{step.label}: parent run {step.parent} has no result")
            if not ((cached := stage1_cache_path(stage1, cfg, data)) and cached.is_file()):
                raise RuntimeError(f"{step.label}: no stage-I state of {step.parent} in {stage1}")

            def snapshot(rep: Any) -> None:  # weights after every epoch, whatever is kept
                if rep.model is not None and (w := _softmax_weights(rep.model)) is not None:
                    last["w"] = w

            res = fit(data, cfg, progress=False, callback=snapshot, stage1_cache=stage1)
            if "w" in last:
                np.save(last_file, last["w"])
        else:  # stage-I and plug-in rows (meta "stage1_cache") fill the cache their branches read
            keep = step.kind == "stage1" or step.meta.get("stage1_cache")
            res = fit(data, cfg, progress=False, stage1_cache=stage1 if keep else None, plugin_cache=runs / "plugin-cache")
        weights_file = None
        if (w := _softmax_weights(res.model)) is not None:
            np.save(runs / (weights_file := f"{step.key}.weights.npy"), w)
        stages = [{"stage": s.stage, "best_epoch": s.best_epoch, "epochs_run": s.epochs_run,
                   "seconds": round(s.seconds, 2), "best_valid_r20": s.best_valid.get("recall@20"),
                   "median_epoch_s": round(float(np.median(s.epoch_seconds)), 3) if s.epoch_seconds else None}
                  for s in res.stages]
        hist = [[h.stage, h.epoch, round(h.loss, 5), None if h.valid is None else round(h.valid["recall@20"], 5)]
                for h in res.history]
        record = {
            "key": step.key, "step": asdict(step), "train_config": cfg.model_dump(mode="json"),
            "channels": list(res.model.channels), "valid": res.valid, "test": res.test,
            "stages": stages,  # a branch's list starts with its cached stage I, its time includes it
            "seconds": round(res.seconds + (parent["seconds"] if parent else 0.0), 2),
            "own_seconds": round(res.seconds, 2), "wall_seconds": round(time.perf_counter() - t_wall, 2),
            "history": (parent["history"] if parent else []) + hist, "weights_file": weights_file,
            # branch runs: weights after the last stage-II epoch (exported: the best-valid epoch's)
            "weights_last_file": last_file.name if last_file.is_file() else None,
            "peak_rss_mb": round(peak_rss_mb(), 1), "loadavg_start": load, "loadavg_end": loadavg(),
            "threads": threads, "finished": now(),
        }
        atomic_write_json(runs / f"{step.key}.json", record)
        return record


def run_or_load(steps: Sequence[Step], args: Any, runs_dir: Path, log: Log) -> dict[str, dict[str, Any]]:
    """key -> result of ``steps``, only read from ``runs_dir`` under ``--report-only``; else run
    (parents first) with ``args.jobs`` workers: finished ones (a result JSON) are skipped, a
    failed one is logged and its dependants dropped."""
    if getattr(args, "report_only", False):
        return {s.key: r for s in steps if (r := load_result(runs_dir, s.key)) is not None}
    (runs_dir := Path(runs_dir)).mkdir(parents=True, exist_ok=True)
    jobs, slots, n_slots, threads = args.jobs, str(args.workdir / "slots"), args.max_train, args.threads
    unique: dict[str, Step] = {}
    for s in steps:
        unique.setdefault(s.key, s)
    # finished runs of this list, and finished parents from earlier calls (e.g. a sweep phase)
    wanted = set(unique) | {d for s in unique.values() for d in s.deps}
    results = {k: r for k in wanted if (r := load_result(runs_dir, k)) is not None}
    pending = [s for k, s in unique.items() if k not in results]
    if missing := {d for s in pending for d in s.deps if d not in unique and d not in results}:
        log(f"[bench] WARNING: parents {sorted(missing)} are neither planned nor finished")
    if n_done := sum(k in results for k in unique):
        log(f"[bench] {n_done} of {len(unique)} runs already done (resumed from {runs_dir})")
    failed, running, t0 = set(), {}, time.perf_counter()
    with process_pool(jobs) as ex:
        while pending or running:
            for s in list(pending):
                if len(running) >= jobs:
                    break
                if any(d in failed for d in s.deps):
                    pending.remove(s)
                    failed.add(s.key)
                    log(f"[bench] skip {s.label} {s.meta}: a parent run failed")
                elif (r := load_result(runs_dir, s.key)) is not None:  # done by another invocation
                    pending.remove(s)
                    results[s.key] = r
                else:
                    results.update({d: rd for d in s.deps if d not in results and (rd := load_result(runs_dir, d))})
                    if all(d in results for d in s.deps):
                        pending.remove(s)
                        running[ex.submit(run_step, asdict(s), str(runs_dir), slots, n_slots, threads)] = s
            if not running:
                for s in pending:
                    log(f"[bench] skip {s.label} {s.meta}: its parent never finished")
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                s = running.pop(fut)
                try:
                    r = results[s.key] = fut.result()
                except Exception:  # noqa: BLE001 - one failed run must not stop the benchmark
                    failed.add(s.key)
                    log(f"[bench] FAILED {s.label} {s.meta}:\n{traceback.format_exc()}")
                    continue
                log(f"[bench] {time.perf_counter() - t0:7.0f}s done {s.label:<22} {s.meta} "
                    f"stages={[(x['stage'], x['best_epoch'], x['epochs_run']) for x in r['stages']]} "
                    f"valid R@20={r['valid'].get('recall@20', float('nan')):.4f} "
                    f"test R@20={r['test'].get('recall@20', float('nan')):.4f} ({r['own_seconds']:.0f}s)")
    return results


# -- command line -------------------------------------------------------------------------------------
def make_logger(path: Path) -> Log:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    def log(msg: str) -> None:
        print(line := f"{dt.datetime.now():%H:%M:%S} {msg}", flush=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return log


def parser(doc: str | None, *options: tuple[str, Any, str | None], jobs: int = 2,
           report_only: bool = True) -> argparse.ArgumentParser:
    """A script's parser: its docstring as the help, the options every script shares, and each
    (flag, default, help) of ``options`` typed by its default (a list: one or more of its type)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help=f"cache of generated datasets and per-run results (default {DEFAULT_WORKDIR})")
    p.add_argument("--results", type=Path, default=RESULTS, help="where the .json/.md/.png go (default bench/results)")
    p.add_argument("--jobs", type=int, default=jobs, help=f"training processes of this script (default {jobs})")
    p.add_argument("--max-train", type=int, default=2, help="machine-wide cap on training processes across bench "
                   "scripts (slot locks in WORKDIR/slots; default 2 = this machine's cores)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process (default 1)")
    p.add_argument("--quick", action="store_true", help="smoke check on small data (results under WORKDIR)")
    if report_only:
        p.add_argument("--report-only", action="store_true", help="rebuild the report from stored results")
    for flag, default, text in options:
        many = isinstance(default, list)
        p.add_argument(flag, type=type(default[0] if many else default), default=default, help=text,
                       nargs="+" if many else None)
    return p


def parse_args(p: Any, argv: Sequence[str] | None = None, **quick: Any) -> Any:
    """``p.parse_args``; under ``--quick``, the ``quick`` values replace the arguments' and the
    results go to WORKDIR/quick-results unless ``--results`` names a folder (never the committed ones)."""
    args = p.parse_args(argv)
    if getattr(args, "quick", False):
        vars(args).update(quick)
        if args.results == RESULTS:
            args.results = args.workdir / "quick-results"
    return args
