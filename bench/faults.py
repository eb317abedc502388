"""Issue 14 hardening benchmark: a live ``margo serve --workers 2`` on its own PostgreSQL database
and Redis, loaded by client threads while one fault at a time is injected (no fault first); the
phases and the columns are described in bench/templates/faults.md.

    .venv/bin/python -m bench.faults [--quick]
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from bench import harness as H
from trainer.bundle import load_bundle
from trainer.data import import_synth, load_dataset
from trainer.export import export_model
from trainer.train import fit

NAME = "faults"
USERS = 500
IDS: dict[str, list[str]] = {}  # the trained model's user and item ids
BATCH, STAMP0 = 100, 10**10  # interactions per POST; each phase writes timestamps STAMP0 + phase * 10**7 + record
SLOW_CLIENTS, HEADER_TIMEOUT_S, JOB_STALE_S = 2000, 5.0, 5.0
HEADER = "X-API-Key"
KEYS: dict[str, str] = {}
PACKAGES = ("scipy", "fastapi", "uvicorn")
PG_ADMIN, PG_DB = "postgresql://postgres@127.0.0.1:5432/postgres", "margo_bench_faults"
BAD = [("GET", "/users/a%00b/recommendations", None), ("GET", "/jobs?offset=99999999999999999999999", None),
       ("POST", "/interactions", b'{"interactions": [{"user_id": "u1", "item_id": "i1", "weight": NaN}]}'),
       ("POST", "/interactions", b'{"interactions": [{"user_id": "u\\u0000", "item_id": "i1"}]}'),
       ("POST", "/items", b'{"item_id": "x", "vectors": {"text": [3.5e38]}}'), ("POST", "/interactions", b"{not json"),
       ("POST", "/interactions", b"x" * (17 * 1024 * 1024)), ("GET", "/models/%ff%fe", None)]


class StallingProxy:
    """127.0.0.1:<port> -> PostgreSQL; while ``go`` is clear it forwards nothing and answers no new
    connection (a server that hangs with its TCP connections open, not one that is down)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.go, self.server = target, threading.Event(), socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.go.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            self.go.wait()
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self.go.wait()
                dst.sendall(data)
        with contextlib.suppress(OSError):  # one side closed (a reset backend): so is the other
            dst.shutdown(socket.SHUT_RDWR)


def start_redis(port: int, work: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    H.wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=0.2).close() or True, 10)
    return proc


def children(pid: int) -> list[tuple[int, bytes]]:
    """Direct children of ``pid``: (pid, command line)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append((int(stat.parent.name), (stat.parent / "cmdline").read_bytes()))
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants (RQ's work horse), as when the worker's machine dies."""
    for child, _ in children(pid):
        kill_tree(child)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def api_workers(server: subprocess.Popen) -> list[int]:
    return [pid for pid, cmd in children(server.pid) if b"spawn_main" in cmd]


def trained_bundle(work: Path) -> Path:
    """A small MARGO model trained on a synthetic dataset the registry seeds into SQL (retraining needs it)."""
    data = load_dataset(import_synth(work / "data", n_users=USERS, n_items=2000, n_interactions=20000, n_clusters=8,
                                     modalities={"image": 32, "text": 32}, progress=False, overwrite=True))
    cfg = H.train_config(model="margo", threads=1, epochs=3, patience=2, dim=16, hidden=32,
                         knn_k=5, user_graph_k=10)
    bundle = load_bundle(path := export_model(fit(data, cfg, progress=False), data, cfg,
                                              work / "bundle", overwrite=True))
    IDS["users"], IDS["items"] = list(bundle.user_ids), list(bundle.item_ids)
    return path


def batch(j: int, stride: int, stamp0: int) -> tuple[bytes, set[int]]:
    """POST /interactions body of records [j * stride, j * stride + BATCH): with stride < BATCH the
    batches overlap (each record posted BATCH / stride times, by different writers at once)."""
    users, items, recs = IDS["users"], IDS["items"], range(j * stride, j * stride + BATCH)
    rows = [{"user_id": users[r % len(users)], "item_id": items[r * 7 % len(items)], "timestamp": stamp0 + r} for r in recs]
    return json.dumps({"interactions": rows}).encode(), set(recs)


def load(port: int, seconds: float, fault: Callable[[], None], bad_input: bool, writers: int = 1,
         stamp0: int = STAMP0) -> dict[str, Any]:
    """Recommendation readers, one SQL reader (GET /jobs), ``writers`` interaction writers (8:
    overlapping batches) and, for the flood, bad requests for ``seconds``; ``fault()`` runs 1 s in.
    Each request: (start, latency, status or 0 = failed); ``acked``: records of 2xx batches."""
    log: dict[str, list[tuple[float, float, int]]] = {"rec": [], "sql": [], "bad": [], "write": []}
    stop, rng, t0, acked = time.monotonic() + seconds, np.random.default_rng(0), time.monotonic(), set()
    batches = iter(range(10**6))  # shared by the writers (next() is atomic under the GIL)

    def worker(kind: str) -> None:
        key = {HEADER: KEYS["write"]} if kind in ("bad", "write") else {}  # reads are public: no key check
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30 if kind == "write" else 10, headers=key) as c:
            while (t := time.monotonic()) < stop:
                records: set[int] = set()
                body = None
                if kind == "write":
                    body, records = batch(next(batches), BATCH // 4 if writers > 1 else BATCH, stamp0)
                user = IDS["users"][rng.integers(USERS)] if kind == "rec" else None
                method, path, body = {"bad": BAD[len(log[kind]) % len(BAD)],
                                      "sql": ("GET", "/jobs?limit=5", None), "write": ("POST", "/interactions", body),
                                      "rec": ("GET", f"/users/{user}/recommendations?k=10", None)}[kind]
                try:
                    status = c.request(method, path, content=body, headers={"content-type": "application/json"}).status_code
                except httpx.HTTPError:
                    status = 0
                log[kind].append((t - t0, time.monotonic() - t, status))
                if 200 <= status < 300:
                    acked.update(records)

    threads = [threading.Thread(target=worker, args=(k,))
               for k in ["rec"] * 4 + ["sql"] + ["write"] * writers + ["bad"] * 2 * bad_input]
    for th in threads:
        th.start()
    time.sleep(1.0)
    fault()
    for th in threads:
        th.join()
    out: dict[str, Any] = {}
    for kind, rows in ((k, v) for k, v in log.items() if v):
        lat, codes = np.array([r[1] for r in rows]), [r[2] for r in rows]
        first_503 = next((r[0] + r[1] - 1.0 for r in rows if r[0] >= 1.0 and r[2] == 503), None)
        out[kind] = {"requests": len(rows), "rps": round(len(rows) / seconds, 1),
                     "p50_ms": round(float(np.median(lat)) * 1e3, 1),
                     "max_s": round(float(lat.max()), 2), "ok": sum(200 <= c < 300 for c in codes),
                     "4xx": sum(400 <= c < 500 for c in codes), "503": codes.count(503),
                     "5xx_other": sum(c >= 500 and c != 503 for c in codes), "failed": codes.count(0),
                     "first_503_after_fault_s": None if first_503 is None else round(first_503, 2)}
    return {**out, "acked": sorted(acked)}


def slow_clients(port: int, n: int, stop: threading.Event, closed: list[float]) -> None:
    """``n`` connections sending a request's headers one byte every 2 s; when each is closed."""
    socks, t0 = [], time.monotonic()
    for _ in range(n):
        with contextlib.suppress(OSError):
            socks.append(sock := socket.create_connection(("127.0.0.1", port)))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sock.setblocking(False)
    while socks and not stop.wait(2.0):
        for sock in list(socks):
            try:
                sock.send(b"a")
                sock.recv(4096)  # an answer (408) or the end: closed by the server
                raise OSError
            except BlockingIOError:
                continue
            except OSError:
                closed.append(time.monotonic() - t0)
                socks.remove(sock)
                sock.close()
    for sock in socks:
        sock.close()


def fault_phases(args: Any, log: H.Log) -> list[dict[str, Any]]:
    (work := args.workdir / "faults").mkdir(parents=True, exist_ok=True)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DB}")
    proxy, redis_port, port = StallingProxy(("127.0.0.1", 5432)), H.free_port(), H.free_port()
    redis, direct = [start_redis(redis_port, work)], f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MARGO_")}, "OMP_NUM_THREADS": "1",
           "MARGO_DATABASE_URL": direct, "MARGO_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "MARGO_MODEL_DIR": str(work / "models"), "MARGO_LOG_REQUESTS": "false", "MARGO_PUBLIC_READS": "true",
           "MARGO_CLIENT_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "MARGO_SNAPSHOT_DIR": str(work / "snapshots"),
           "MARGO_JOB_HEARTBEAT_S": "1", "MARGO_JOB_STALE_S": str(JOB_STALE_S), "MARGO_TRAIN_THREADS": "1"}

    H.margo(["db", "upgrade"], env)  # on the bench database, directly (not through the proxy)
    H.margo(["models", "register", str(trained_bundle(work)), "--activate"], env)
    KEYS.update({role: H.margo(["keys", "create", "--role", role, "--name", "bench-faults"], env).split()[0]
                 for role in ("write", "admin")})
    env["MARGO_DATABASE_URL"] = direct.replace(":5432/", f":{proxy.port}/")
    serve_log = (work / "serve.log").open("wb")

    def margo(*argv: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", H.CLI, *argv], env=env, stdout=serve_log,
                                stderr=subprocess.STDOUT)

    server = margo("serve", "--port", str(port), "--workers", "2", "--log-level", "warning")
    seconds, stop, closed = 4.0 if args.quick else 12.0, threading.Event(), []  # closed: the slow clients'
    redis_stopped = lambda sig: lambda: os.kill(redis[0].pid, sig)  # noqa: E731
    admin = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers={HEADER: KEYS["admin"]})
    job_worker, job, killed_at = [None], {}, [0.0]
    status = lambda jid: admin.get(f"/jobs/{jid}").json()  # noqa: E731

    def restart_redis() -> None:
        redis[0].wait()
        redis[0] = start_redis(redis_port, work)

    def retrain_running() -> None:  # before the phase: a long retrain that has trained an epoch
        job_worker[0] = margo("worker")
        job["id"] = admin.post("/retrain", json={"hyperparameters": {"epochs": 1000, "patience": 1000}}).raise_for_status().json()["job_id"]
        H.wait_for(lambda: ((j := status(job["id"])).get("epoch") or 0) >= 1 and not job.update(j), 300)

    def kill(pid: Callable[[], int]) -> Callable[[], None]:
        return lambda: (kill_tree(pid()), killed_at.__setitem__(0, time.monotonic()))

    def job_recovered() -> dict[str, Any]:  # a new worker; the sweep queues the dead job again, it trains again; a new retrain
        job_worker[0].wait()
        job_worker[0], seen = margo("worker"), []
        # a new attempt (claim sets started_at) that has trained an epoch
        H.wait_for(lambda: (seen.append(status(job["id"])) or seen[-1]["started_at"]) != job["started_at"]
                   and (seen[-1].get("epoch") or 0) >= 1, 300)
        out = {"restored_s": round(time.monotonic() - killed_at[0], 1),
               "killed_job": sorted({j["stage"] for j in seen if j["stage"]})}
        admin.delete(f"/jobs/{job['id']}").raise_for_status()
        H.wait_for(lambda: status(job["id"])["status"] == "cancelled", 120)
        new = admin.post("/retrain", json={"hyperparameters": {"epochs": 2}}).raise_for_status().json()["job_id"]
        H.wait_for(lambda: status(new)["status"] in ("succeeded", "failed", "rejected"), 300)
        return {**out, "new_job": status(new)["status"]}

    def api_worker_back() -> dict[str, Any]:
        H.wait_for(lambda: len(api_workers(server)) == 2, 60)
        return {"restored_s": round(time.monotonic() - killed_at[0], 1)}

    def reset_postgres() -> None:  # every backend of the bench database, three times 2 s apart
        def resets() -> None:
            for _ in range(3):
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                 "AND pid <> pg_backend_pid()", (PG_DB,))
                time.sleep(2.0)
        threading.Thread(target=resets, daemon=True).start()

    def slow() -> None:
        threading.Thread(target=slow_clients,
                         args=(port, 200 if args.quick else SLOW_CLIENTS, stop, closed)).start()

    noop = lambda: None  # noqa: E731
    phases = [("no fault", noop, noop, False), ("hung PostgreSQL", proxy.go.clear, proxy.go.set, False),
              ("reset PostgreSQL connections (3x)", reset_postgres, noop, False),
              ("SIGKILL of one API worker", kill(lambda: api_workers(server)[0]), api_worker_back, False),
              ("8 overlapping writers", noop, noop, False, 8),
              ("hung Redis (SIGSTOP)", redis_stopped(signal.SIGSTOP), redis_stopped(signal.SIGCONT), False),
              ("killed Redis (SIGKILL, restarted after)", redis_stopped(signal.SIGKILL), restart_redis, False),
              (f"{SLOW_CLIENTS} slow-header clients", slow, stop.set, False), ("bad-input flood", noop, noop, True),
              ("SIGKILL of the job worker mid-retrain", kill(lambda: job_worker[0].pid), job_recovered, False, 1, retrain_running)]
    rows = []

    def ok(path: str, timeout: float) -> bool:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout).status == 200

    try:  # both workers ready: 20 readyz answers in a row (the kernel spreads connections)
        H.wait_for(lambda: all(ok("/readyz", 2) for _ in range(20)), 120)
        load(port, 3.0, noop, True, 1, STAMP0 - 10**7)  # warm-up: caches, connections, code paths
        for i, (name, start, end, bad, *more) in enumerate(phases):
            writers, before = [*more, noop][:2] if more else (1, noop)
            before()
            # the slow clients need their phase to outlast the header timeout
            length = max(seconds, HEADER_TIMEOUT_S + 5) if "slow" in name else seconds
            stamp0 = STAMP0 + i * 10**7
            row = {"phase": name, "seconds": length, "writers": writers, **load(port, length, start, bad, writers, stamp0)}
            row.update(end() or {})
            row["recovered_s"] = round(H.wait_for(lambda: ok("/jobs?limit=1", 5), 60), 2)
            with psycopg.connect(direct) as conn:  # records lost: acknowledged, not in SQL
                stored = {r[0] - stamp0 for r in conn.execute("SELECT timestamp FROM interactions WHERE timestamp "
                                                              ">= %s AND timestamp < %s", (stamp0, stamp0 + 10**7))}
            acked = set(row.pop("acked"))
            row.update(records_acked=len(acked), records_stored=len(stored), records_lost=len(acked - stored))
            if closed:
                row["slow_closed"], row["slow_closed_by_s"] = len(closed), round(max(closed), 1)
            log(f"[faults] {row}")
            rows.append(row)
    finally:
        admin.close()
        if job_worker[0] is not None:
            kill_tree(job_worker[0].pid)
        server.terminate()
        server.wait(30)
        redis[0].kill()
    return rows


def faults_md(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], kind: str, key: str) -> Any:
        value = row.get(kind, {}).get(key, "")
        return f"{value:g}" if isinstance(value, float) else value

    table = H.md_table(
        ["phase", "rec req/s", "rec p50 ms", "rec slowest s", "rec errors", "SQL req", "SQL 503", "first 503 after fault s",
         "SQL slowest s", "bad req", "bad 4xx", "writes (503, slowest s)", "records acked", "records lost", "5xx (not 503)", "failed",
         "recovered s", "restored s"],
        [[r["phase"], *(cell(r, "rec", k) for k in ("rps", "p50_ms", "max_s")),
          r["rec"]["requests"] - r["rec"]["ok"],
          *(cell(r, "sql", k) for k in ("requests", "503", "first_503_after_fault_s", "max_s")),
          *(cell(r, "bad", k) for k in ("requests", "4xx")),
          "{} ({}, {})".format(*(cell(r, "write", k) for k in ("requests", "503", "max_s"))),
          r["records_acked"], r["records_lost"],
          *(sum(cell(r, k, x) or 0 for k in ("rec", "sql", "bad", "write")) for x in ("5xx_other", "failed")),
          f"{r['recovered_s']:g}", f"{r['restored_s']:g}" if "restored_s" in r else ""] for r in rows])
    job, slow = (next((r for r in rows if key in r), None) for key in ("killed_job", "slow_closed"))
    return H.template(NAME, "report", machine=H.machine_md(info), table=table, stale=JOB_STALE_S,
                      slow=H.template(NAME, "slow", **slow, timeout=HEADER_TIMEOUT_S) if slow else "",
                      job=H.template(NAME, "job", **job) if job else "")


def main(argv: list[str] | None = None) -> int:
    args = H.parse_args(H.parser(__doc__, report_only=False), argv)
    log, info = H.make_logger(args.workdir / f"{NAME}.log"), H.machine_info(packages=PACKAGES)
    faults = fault_phases(args, log)
    H.write_report(args.results, NAME, {"machine": info, "commit": H.git_commit(), "faults": faults},
                   faults_md(faults, info), log=log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
