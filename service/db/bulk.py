"""Bulk upserts of a bundle's users and items (100k+ rows in seconds).

The ORM's per-row parameter processing costs tens of microseconds a row, so these go to the
driver directly: PostgreSQL gets ``COPY`` into a temporary table and one
``INSERT ... SELECT ... ON CONFLICT``; SQLite gets one prepared ``INSERT ... ON CONFLICT``
run by ``executemany``. Existing items keep their hidden flag and are only rewritten (and
their ``updated_at`` bumped) when title, categories or metadata changed, so the catalogue
pollers of every API process re-read only what really changed.

JSON is written with :func:`dumps_json`, the same serializer the engine uses
(``service/db/session.py``), so equal content always has equal text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy.orm import Session

from service.db.tables import utcnow

SQLITE_BATCH = 20_000
"""Rows per SQLite executemany call."""


def dumps_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _sqlite_time(value: dt.datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text (UTC, no zone)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _item_tuples(items: Iterable[dict[str, Any]]) -> list[tuple[str, str | None, str, str]]:
    rows: dict[str, tuple[str, str | None, str, str]] = {}
    for it in items:
        external_id = str(it["external_id"])
        title = it.get("title")
        rows[external_id] = (
            external_id,
            None if title is None else str(title),
            dumps_json(dict(it.get("metadata") or {})),
            dumps_json([str(c) for c in it.get("categories") or ()]),
        )
    return list(rows.values())  # one row per id: ON CONFLICT may touch a row only once


def upsert_items(
    session: Session, items: Iterable[dict[str, Any]], *, update_existing: bool = True
) -> None:
    """``update_existing=False``: insert missing items only, stored ones stay as they are."""
    rows = _item_tuples(items)
    if not rows:
        return
    conflict = _UPDATE if update_existing else "DO NOTHING"
    if session.get_bind().dialect.name == "postgresql":
        _pg_upsert_items(session, rows, utcnow(), conflict)
    else:
        _sqlite_upsert_items(session, rows, utcnow(), conflict)


def upsert_users(session: Session, external_ids: Iterable[str]) -> None:
    ids = list(dict.fromkeys(str(u) for u in external_ids))  # in the caller's order
    if not ids:
        return
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        cur = _pg_cursor(session)
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _margo_users_in (external_id text)")
        cur.execute("TRUNCATE _margo_users_in")
        with cur.copy("COPY _margo_users_in (external_id) FROM STDIN") as copy:
            for u in ids:
                copy.write_row((u,))
        cur.execute(
            "INSERT INTO users (external_id, created_at) SELECT external_id, %s "
            "FROM _margo_users_in ON CONFLICT (external_id) DO NOTHING",
            (now,),
        )
        return
    conn = session.connection()
    stamp = _sqlite_time(now)
    for start in range(0, len(ids), SQLITE_BATCH):
        conn.exec_driver_sql(
            "INSERT INTO users (external_id, created_at) VALUES (?, ?) "
            "ON CONFLICT (external_id) DO NOTHING",
            [(u, stamp) for u in ids[start : start + SQLITE_BATCH]],
        )


def _pg_cursor(session: Session) -> Any:
    return session.connection().connection.dbapi_connection.cursor()


_CHANGED = (
    "items.title IS DISTINCT FROM excluded.title "
    "OR CAST(items.metadata AS TEXT) <> CAST(excluded.metadata AS TEXT) "
    "OR CAST(items.categories AS TEXT) <> CAST(excluded.categories AS TEXT)"
)
_SET = (
    "title = excluded.title, metadata = excluded.metadata, "
    "categories = excluded.categories, updated_at = excluded.updated_at"
)
_UPDATE = f"DO UPDATE SET {_SET} WHERE {_CHANGED}"


def _pg_upsert_items(
    session: Session, rows: Sequence[tuple], now: dt.datetime, conflict: str
) -> None:
    cur = _pg_cursor(session)
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS _margo_items_in "
        "(external_id text, title text, metadata text, categories text)"
    )
    cur.execute("TRUNCATE _margo_items_in")
    with cur.copy("COPY _margo_items_in FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cur.execute(
        "INSERT INTO items (external_id, title, metadata, categories, hidden, created_at, "
        "updated_at) SELECT external_id, title, CAST(metadata AS json), "
        "CAST(categories AS json), false, %s, %s FROM _margo_items_in "
        f"ON CONFLICT (external_id) {conflict}",
        (now, now),
    )


def _sqlite_upsert_items(
    session: Session, rows: Sequence[tuple], now: dt.datetime, conflict: str
) -> None:
    conn = session.connection()
    stamp = _sqlite_time(now)
    sql = (
        "INSERT INTO items (external_id, title, metadata, categories, hidden, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, 0, ?, ?) "
        f"ON CONFLICT (external_id) {conflict}"
    )
    for start in range(0, len(rows), SQLITE_BATCH):
        conn.exec_driver_sql(sql, [(*r, stamp, stamp) for r in rows[start : start + SQLITE_BATCH]])
