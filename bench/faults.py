"""Issue 14 hardening benchmark: a live server under faults, and the memory of the user graph.

Faults: ``margo serve --workers 2`` on its own PostgreSQL database (reached through a TCP proxy
that can stall) and its own redis-server, loaded by client threads while one fault at a time is
injected (no fault first, in the same run): PostgreSQL hung, Redis hung (SIGSTOP) and killed
(SIGKILL, restarted), 2,000 slow-header clients, a flood of bad input. Per phase: requests/s,
errors by kind, the slowest answer, time from the fault to the first 503, time to recover.
The user graph's memory is bench/graph_memory.py.

    .venv/bin/python -m bench.faults             # everything
    .venv/bin/python -m bench.faults --quick     # smoke check (results under WORKDIR)
"""

from __future__ import annotations

import argparse
import contextlib
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

import numpy as np

from bench import harness as H

NAME = "faults"
USERS = 500
SLOW_CLIENTS = 2000
HEADER_TIMEOUT_S = 5.0
HEADER = "X-API-Key"
KEYS: dict[str, str] = {}
CLI = "import sys; from service.cli import main; sys.exit(main())"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "margo_bench_faults"


# -- faults against a live server -------------------------------------------------------------
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(port: int, work: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=0.2).close() or True, 10)
    return proc


def wait_for(ok: Callable[[], bool], limit_s: float) -> float:
    """Seconds until ``ok()`` is true (exceptions count as false); raises past ``limit_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        with contextlib.suppress(Exception):
            if ok():
                return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"not ready within {limit_s} s")


def margo_cli(env: dict[str, str], *argv: str) -> None:
    subprocess.run([sys.executable, "-c", CLI, *argv], env=env, check=True, capture_output=True)


BAD = [("GET", "/users/a%00b/recommendations", None), ("GET", "/jobs?offset=99999999999999999999999", None),
       ("POST", "/interactions", b'{"interactions": [{"user_id": "u1", "item_id": "i1", "weight": NaN}]}'),
       ("POST", "/interactions", b'{"interactions": [{"user_id": "u\\u0000", "item_id": "i1"}]}'),
       ("POST", "/items", b'{"item_id": "x", "vectors": {"text": [3.5e38]}}'), ("POST", "/interactions", b"{not json"),
       ("POST", "/interactions", b"x" * (17 * 1024 * 1024)), ("GET", "/models/%ff%fe", None)]


def load(port: int, seconds: float, fault: Callable[[], None], bad_input: bool) -> dict[str, Any]:
    """Recommendation readers, one SQL reader (GET /jobs) and, for the flood, bad requests for
    ``seconds``; ``fault()`` runs 1 s in. Each request: (start, latency, status or 0 = failed)."""
    import httpx

    log: dict[str, list[tuple[float, float, int]]] = {"rec": [], "sql": [], "bad": []}
    stop, rng, t0 = time.monotonic() + seconds, np.random.default_rng(0), time.monotonic()

    def worker(kind: str) -> None:
        key = {HEADER: KEYS["write"]} if kind == "bad" else {}  # reads are public: no key check
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=key) as c:
            while (t := time.monotonic()) < stop:
                method, path, body = (BAD[len(log[kind]) % len(BAD)] if kind == "bad" else
                                      ("GET", f"/users/u{rng.integers(USERS)}/recommendations?k=10", None)
                                      if kind == "rec" else ("GET", "/jobs?limit=5", None))
                try:
                    status = c.request(method, path, content=body, headers={"content-type": "application/json"}).status_code
                except httpx.HTTPError:
                    status = 0
                log[kind].append((t - t0, time.monotonic() - t, status))

    kinds = ["rec"] * 4 + ["sql"] + (["bad"] * 2 if bad_input else [])
    threads = [threading.Thread(target=worker, args=(k,)) for k in kinds]
    for th in threads:
        th.start()
    time.sleep(1.0)
    fault()
    for th in threads:
        th.join()
    out: dict[str, Any] = {}
    for kind, rows in log.items():
        if rows:
            lat = np.array([r[1] for r in rows])
            codes = [r[2] for r in rows]
            after = [r for r in rows if r[0] >= 1.0]
            first_503 = next((r[0] + r[1] - 1.0 for r in after if r[2] == 503), None)
            out[kind] = {"requests": len(rows), "rps": round(len(rows) / seconds, 1), "p50_ms": round(float(np.median(lat)) * 1e3, 1),
                         "max_s": round(float(lat.max()), 2), "ok": sum(200 <= c < 300 for c in codes),
                         "4xx": sum(400 <= c < 500 for c in codes), "503": codes.count(503),
                         "5xx_other": sum(c >= 500 and c != 503 for c in codes), "failed": codes.count(0),
                         "first_503_after_fault_s": None if first_503 is None else round(first_503, 2)}
    return out


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


def fault_phases(args: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    import psycopg

    from bench import synth_bundle
    from service.auth import create_api_key
    from service.db.session import Database

    work = args.workdir / "faults"
    work.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DB}")
    proxy, redis_port, port = StallingProxy(("127.0.0.1", 5432)), free_port(), free_port()
    redis = [start_redis(redis_port, work)]
    direct = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MARGO_")}, "OMP_NUM_THREADS": "1",
           "MARGO_DATABASE_URL": direct, "MARGO_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "MARGO_MODEL_DIR": str(work / "models"), "MARGO_LOG_REQUESTS": "false", "MARGO_PUBLIC_READS": "true",
           "MARGO_CLIENT_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)}
    margo_cli(env, "db", "upgrade")
    margo_cli(env, "models", "register", str(synth_bundle.write(work / "bundle", 2000, USERS)), "--activate")
    db = Database(direct)
    with db.session() as session:
        KEYS["write"] = create_api_key(session, "write", "bench-faults")
    db.dispose()
    env["MARGO_DATABASE_URL"] = direct.replace(":5432/", f":{proxy.port}/")
    serve_log = (work / "serve.log").open("wb")
    server = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--port", str(port), "--workers", "2", "--log-level",
                               "warning"], env=env, stdout=serve_log, stderr=subprocess.STDOUT)
    seconds = 4.0 if args.quick else 12.0
    stop, closed = threading.Event(), []  # the slow clients' thread
    redis_stopped = lambda sig: lambda: os.kill(redis[0].pid, sig)  # noqa: E731

    def restart_redis() -> None:
        redis[0].wait()
        redis[0] = start_redis(redis_port, work)

    noop = lambda: None  # noqa: E731
    phases = [("no fault", noop, noop, False),
              ("hung PostgreSQL", proxy.go.clear, proxy.go.set, False),
              ("hung Redis (SIGSTOP)", redis_stopped(signal.SIGSTOP), redis_stopped(signal.SIGCONT), False),
              ("killed Redis (SIGKILL, restarted after)", redis_stopped(signal.SIGKILL), restart_redis, False),
              (f"{SLOW_CLIENTS} slow-header clients", lambda: threading.Thread(
                  target=slow_clients, args=(port, 200 if args.quick else SLOW_CLIENTS, stop, closed)).start(), stop.set, False),
              ("bad-input flood", noop, noop, True)]
    rows = []
    try:
        # both workers ready: 20 readyz answers in a row (the kernel spreads connections)
        wait_for(lambda: all(urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
                             for _ in range(20)), 120)
        load(port, 3.0, noop, True)  # warm-up: caches, connections, code paths
        for name, start, end, bad in phases:
            # the slow clients need their phase to outlast the header timeout
            length = max(seconds, HEADER_TIMEOUT_S + 5) if "slow" in name else seconds
            row = {"phase": name, "seconds": length, **load(port, length, start, bad)}
            end()
            row["recovered_s"] = round(wait_for(lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{port}/jobs?limit=1", timeout=5).status == 200, 60), 2)
            if closed:
                row["slow_closed"], row["slow_closed_by_s"] = len(closed), round(max(closed), 1)
            log(f"[faults] {row}")
            rows.append(row)
    finally:
        server.terminate()
        server.wait(30)
        redis[0].kill()
    return rows


def faults_md(rows: list[dict[str, Any]]) -> str:
    def cell(row: dict[str, Any], kind: str, key: str) -> Any:
        value = row.get(kind, {}).get(key, "")
        return f"{value:g}" if isinstance(value, float) else value

    table = H.md_table(
        ["phase", "rec req/s", "rec p50 ms", "rec slowest s", "rec errors", "SQL req", "SQL 503", "first 503 after fault s",
         "SQL slowest s", "bad req", "bad 4xx", "5xx (not 503)", "failed", "recovered s"],
        [[r["phase"], cell(r, "rec", "rps"), cell(r, "rec", "p50_ms"), cell(r, "rec", "max_s"),
          r["rec"]["requests"] - r["rec"]["ok"], cell(r, "sql", "requests"), cell(r, "sql", "503"),
          cell(r, "sql", "first_503_after_fault_s"), cell(r, "sql", "max_s"), cell(r, "bad", "requests"), cell(r, "bad", "4xx"),
          sum(cell(r, k, "5xx_other") or 0 for k in ("rec", "sql", "bad")),
          sum(cell(r, k, "failed") or 0 for k in ("rec", "sql", "bad")), f"{r['recovered_s']:g}"] for r in rows])
    slow = next((r for r in rows if "slow_closed" in r), None)
    slow_line = (f" The slow-header clients: {slow['slow_closed']} closed by the server, the last {slow['slow_closed_by_s']} s "
                 f"after they opened (header timeout {HEADER_TIMEOUT_S:g} s, one byte every 2 s)." if slow else "")
    return (f"## A live server under faults\n\n`margo serve --workers 2` on PostgreSQL (through a TCP proxy that can stall) "
            "and a private Redis (response cache), public reads; per phase 4 threads read recommendations of random "
            "users, one reads `GET /jobs` (needs SQL), the flood adds 2 threads of bad requests (NUL ids, 2^70 offsets, "
            "NaN weights, float32 overflow, malformed JSON, a 17 MiB body); the fault starts 1 s into the phase and "
            f"ends with it; 'recovered' is the wait for `GET /jobs` to answer 200 after the fault ends.\n\n{table}\n\n"
            f"Rec errors: recommendation answers other than 200.{slow_line}\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    H.add_common_args(p, report_only=False)
    args = H.parse_args(p, argv)
    log = H.make_logger(args.workdir / f"{NAME}.log")
    info = H.machine_info(packages=("scipy", "fastapi", "uvicorn"))
    faults = fault_phases(args, log)
    data = {"machine": info, "commit": H.git_commit(), "faults": faults}
    md = f"# Faults (issue 14)\n\n{H.machine_md(info)}\n{faults_md(faults)}"
    for path in H.write_report(args.results, NAME, data, md):
        log(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
