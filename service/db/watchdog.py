"""A client-side deadline for PostgreSQL that has stopped answering (TCP open, no reply).

``statement_timeout`` cannot help there: it is enforced by the server that hangs. A plain read
timeout cannot tell a hung server from a slow statement. So every wait of an API connection on
the server is registered here (``WatchedConnection.wait``, which psycopg calls for every query,
commit, rollback and pool ping), and a watchdog thread checks a wait older than ``suspect_s``
with a probe: a new connection and ``SELECT 1``. An answer (even an error) means the server
is alive and the statement merely slow (``statement_timeout`` bounds it). No answer within
``probe_s`` means it hangs: the sockets of every waiting connection are shut down, so their
callers get a driver error at once (a 503 ``database_unavailable``), and until a probe is
answered again new waits and connections fail at once instead of queueing behind the hang.

A hang is thus answered within about ``suspect_s + probe_s`` (the ``MARGO_DB_ANSWER_TIMEOUT_S``
budget), on pooled connections already open as well as on new ones.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

import psycopg

log = logging.getLogger(__name__)


class Watchdog:
    """The waits of one engine's connections, the probe, and whether the server hangs."""

    def __init__(self, answer_s: float) -> None:
        self.suspect_s = answer_s * 0.4
        self.probe_s = answer_s * 0.4
        self.tick_s = min(0.1, answer_s * 0.05)
        self.connect_args: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.hung = False
        self._waits: dict[int, tuple[float, WatchedConnection]] = {}
        self._cond = threading.Condition()
        self._probe: threading.Thread | None = None
        self._answered = threading.Event()
        self._probe_started = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- called by connections ---------------------------------------------------------------
    def connect(self, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> WatchedConnection:
        """A watched connection (for SQLAlchemy's ``do_connect``); fails at once while hung."""
        self.connect_args = (cargs, cparams)
        if self.hung:
            raise psycopg.OperationalError("PostgreSQL does not answer (connection not tried)")
        conn = WatchedConnection.connect(*cargs, **cparams)
        conn.watchdog = self
        return conn

    def enter(self, conn: WatchedConnection) -> None:
        with self._cond:
            if self.hung:
                _cut(conn)  # the driver's own error follows, and marks the connection broken
                return
            self._waits[id(conn)] = (time.monotonic(), conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="margo-sql-watchdog",
                                                daemon=True)  # fmt: skip
                self._thread.start()
            self._cond.notify()

    def leave(self, conn: WatchedConnection) -> None:
        with self._cond:
            self._waits.pop(id(conn), None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    # -- the watchdog thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._waits or self.hung or self._closed):
                    self._cond.wait()  # idle: nothing waits on the server
                if self._closed:
                    return
                now = time.monotonic()
                oldest = min((since for since, _ in self._waits.values()), default=now)
            # a wait past suspect_s since it began and since the last probe: is anyone there?
            if self.hung or now - max(oldest, self._probe_started) >= self.suspect_s:
                self._check()
            time.sleep(self.tick_s)

    def _check(self) -> None:
        if self._probe is None or not self._probe.is_alive():
            self._answered = threading.Event()
            self._probe = threading.Thread(target=self._probe_once, args=(self._answered,),
                                           name="margo-sql-probe", daemon=True)  # fmt: skip
            self._probe_started = time.monotonic()
            self._probe.start()
        if self._answered.wait(self.probe_s):
            if self.hung:
                log.warning("PostgreSQL answers again")
            self.hung = False
        elif not self.hung:
            log.warning(
                "PostgreSQL did not answer a probe within %.1f s: the requests waiting on it "
                "fail now, new ones at once until it answers",
                self.probe_s,
            )
            with self._cond:
                self.hung = True
                waiting = [conn for _, conn in self._waits.values()]
                self._waits.clear()
            for conn in waiting:
                _cut(conn)

    def _probe_once(self, answered: threading.Event) -> None:
        """Connect and ``SELECT 1``; ``answered`` is set on any answer, even an error."""
        if self.connect_args is None:
            return
        cargs, cparams = self.connect_args
        try:
            conn = psycopg.connect(*cargs, **{**cparams, "autocommit": True})
        except psycopg.errors.ConnectionTimeout:
            return  # silence: a hang
        except psycopg.Error:
            answered.set()  # refused or an error reply: not a hang (a down server fails waits)
            return
        # the server may hang between the connect and the answer: cut the probe too by then
        limit = threading.Timer(self.suspect_s + self.probe_s, _cut, args=(conn,))
        limit.start()
        try:
            with conn:
                conn.execute("SELECT 1")
            answered.set()
        except psycopg.Error:
            pass
        finally:
            limit.cancel()


def _cut(conn: WatchedConnection) -> None:
    """Shut the connection's socket down: a read blocked on it returns at once (EOF)."""
    with contextlib.suppress(OSError, psycopg.Error, ValueError):
        fd = conn.pgconn.socket
        dup = socket.socket(fileno=socket.dup(fd))  # shutdown acts on the socket, not the fd
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()


class WatchedConnection(psycopg.Connection):
    """A psycopg connection whose waits on the server the ``Watchdog`` sees."""

    watchdog: Watchdog | None = None

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        watchdog = self.watchdog
        if watchdog is None:
            return super().wait(gen, *args, **kwargs)
        watchdog.enter(self)
        try:
            return super().wait(gen, *args, **kwargs)
        finally:
            watchdog.leave(self)
