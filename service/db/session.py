"""Engine and session factory. Built on demand from a URL, never at import time."""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import URL, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from service.db.bulk import dumps_json
from service.db.watchdog import Watchdog
from service.errors import DatabaseNotReady, redact

if TYPE_CHECKING:
    from service.settings import Settings


SUPPORTED = ("sqlite", "postgresql")
POOL_SIZE, POOL_OVERFLOW = 5, 10
"""PostgreSQL connections one engine keeps open, and how many more it may open when busy."""
BACKGROUND_SLOTS = 2
"""Sessions open at once on ``Database.background`` (work after a response, e.g. folding the
users of a written batch): bench/faults.py's 8 overlapping writers queued a fold per batch
faster than they finished, the folds took all 15 pooled connections of a process, and
requests waited out the pool timeout (503). Bounded, they leave the pool to requests."""


@dataclass(frozen=True)
class Timeouts:
    """How long SQL may keep a caller waiting (defaults = the Settings defaults)."""

    connect_s: int = 5
    statement_s: float = 0.0  # none
    pool_s: float = 2.0
    busy_s: float = 10.0
    answer_s: float = 0.0  # PostgreSQL hang detection (watchdog.py); 0 = none
    lock_s: float = 0.0  # none

    @classmethod
    def of(cls, settings: Settings, *, statements: bool = True) -> Timeouts:
        """``statements=False`` for bulk work (registration, snapshots, CLI commands), which
        may rightly run longer than a request's statement limit; they keep the full connect
        and SQLite busy timeouts and no hang watchdog either. A request waits for a SQLite
        lock another process holds at most ``db_answer_timeout_s`` (then 503), as for a
        PostgreSQL that does not answer."""
        answer_s = settings.db_answer_timeout_s if statements else 0.0
        connect_s = settings.db_connect_timeout_s
        if answer_s:  # libpq's connect timeout is whole seconds, at least 2
            connect_s = min(connect_s, max(2, math.ceil(answer_s)))
        busy_s = settings.db_busy_timeout_s
        if statements:  # a request waits for SQLite's lock no longer than for a hung server
            busy_s = min(busy_s, settings.db_answer_timeout_s)
        return cls(
            connect_s=connect_s,
            statement_s=settings.db_statement_timeout_s if statements else 0.0,
            pool_s=settings.db_pool_timeout_s,
            busy_s=busy_s,
            answer_s=answer_s,
            lock_s=settings.db_lock_timeout_s if statements else 0.0,
        )


def _sqlite_pragmas(busy_ms: int) -> Any:
    def on_connect(dbapi_conn: Any, _: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the one writer
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    return on_connect


def _parse(url: str) -> URL:
    """The URL, or DatabaseNotReady in one line (never a traceback) for one we cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseNotReady(
            f"MARGO_DATABASE_URL {redact(url)!r} is not a database URL; use "
            "sqlite:///path/to/file.db or postgresql://user@host/dbname"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise DatabaseNotReady(
            f"MARGO_DATABASE_URL: unsupported database {parsed.get_backend_name()!r}; use "
            "sqlite:///path/to/file.db or postgresql://user@host/dbname"
        )
    return parsed


def create_db_engine(url: str, timeouts: Timeouts | None = None) -> Engine:
    """An engine for ``url``; creates the parent directory of a SQLite file."""
    limits = timeouts or Timeouts()
    parsed = _parse(url)
    # one JSON serializer everywhere, so equal content is equal text (see bulk.py)
    kwargs: dict[str, Any] = {"json_serializer": dumps_json, "json_deserializer": orjson.loads}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": limits.busy_s}
    else:
        connect_args: dict[str, Any] = {
            "connect_timeout": limits.connect_s,
            # an idle pooled connection to a host that vanished is noticed, not reused blind
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        options = [
            f"-c {name}={int(seconds * 1000)}"
            for name, seconds in (("statement_timeout", limits.statement_s),
                                  ("lock_timeout", limits.lock_s))  # fmt: skip
            if seconds > 0
        ]
        if options:
            connect_args["options"] = " ".join(options)
        kwargs.update(
            pool_pre_ping=True,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            pool_timeout=limits.pool_s,
            connect_args=connect_args,
        )
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(int(limits.busy_s * 1000)))
    elif limits.answer_s > 0:
        watchdog = engine.watchdog = Watchdog(limits.answer_s)  # type: ignore[attr-defined]

        def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            return watchdog.connect(cargs, cparams)

        event.listen(engine, "do_connect", connect)
    return engine


class Database:
    """One engine and its session factory; the app keeps one on ``app.state.db``."""

    def __init__(self, url: str, timeouts: Timeouts | None = None) -> None:
        self.url = url
        self.timeouts = timeouts or Timeouts()
        self.engine = create_db_engine(url, self.timeouts)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._slots: threading.BoundedSemaphore | None = None
        self._slot_wait_s = 0.0

    def lane(self, slots: int, wait_s: float | None = None) -> Database:
        """This database (same engine and pool) with at most ``slots`` of the lane's sessions
        open at once. A session that waits longer than ``wait_s`` (default: the pool timeout)
        for a slot raises the pool's TimeoutError, as a full pool would. Dispose the parent,
        not the lane (they share the engine)."""
        if slots < 1:
            raise ValueError(f"a lane needs at least one slot, got {slots}")
        lane = copy.copy(self)
        lane.__dict__.pop("background", None)  # the parent's cached lane is not this one's
        lane._slots = threading.BoundedSemaphore(slots)
        lane._slot_wait_s = self.timeouts.pool_s if wait_s is None else wait_s
        return lane

    @cached_property
    def background(self) -> Database:
        """The lane of work nobody waits for (``BACKGROUND_SLOTS`` sessions at once)."""
        return self.lane(BACKGROUND_SLOTS)

    @classmethod
    def of(cls, settings: Settings, *, statements: bool = True) -> Database:
        """The database of ``settings``, with its timeouts (see ``Timeouts.of``)."""
        return cls(settings.database_url, Timeouts.of(settings, statements=statements))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        slots = self._slots
        if slots is not None and not slots.acquire(timeout=self._slot_wait_s):
            raise PoolTimeout(f"no free slot of this lane within {self._slot_wait_s:g} s")
        try:
            with self.sessions() as session:
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            if slots is not None:
                slots.release()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
        watchdog = getattr(self.engine, "watchdog", None)
        if watchdog is not None:
            watchdog.close()
