"""Alembic, configured in code: ``margo db upgrade`` and the start-up schema check.

The scripts live in the repository's ``migrations/`` (script_location); ``migrations/env.py``
takes the URL from the config attributes set here, or from the settings.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from service.db.session import create_db_engine
from service.errors import DatabaseNotReady

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> str:
    """Bring the database at ``url`` to ``revision``; return the revision it is now at."""
    engine = create_db_engine(url)  # also creates a SQLite file's directory
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        return current_revision(engine) or "base"
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> str:
    """Take the database at ``url`` back to ``revision`` ("base": drop everything)."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
        return current_revision(engine) or "base"
    finally:
        engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert head is not None, f"no migrations under {MIGRATIONS_DIR}"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Raise DatabaseNotReady unless the database is reachable and at the head revision."""
    url = engine.url.render_as_string(hide_password=True)
    try:
        current = current_revision(engine)
    except Exception as exc:  # unreachable server, bad credentials, ...
        raise DatabaseNotReady(f"cannot reach the database at {url}: {exc}") from exc
    head = head_revision()
    if current != head:
        raise DatabaseNotReady(
            f"the database at {url} is at schema revision {current or 'none'}, this code needs "
            f"{head}: run `margo db upgrade` (with the same MARGO_DATABASE_URL) first"
        )
