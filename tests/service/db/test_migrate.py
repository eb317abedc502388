"""The Alembic migrations build the schema the tables describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from service.db.migrate import check_schema, current_revision, downgrade, head_revision, upgrade
from service.db.session import create_db_engine
from service.db.tables import Base
from service.errors import DatabaseNotReady
from service.settings import Settings
from service.state import ServiceState

TABLES = {
    "users",
    "catalogue",
    "items",
    "interactions",
    "model_versions",
    "jobs",
    "item_features",
    "api_keys",
    "folded_items",
    "folded_users",
    "alembic_version",
}


def assert_schema_matches_tables(url: str) -> None:
    engine = create_db_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
        assert current_revision(engine) == head_revision()
        check_schema(engine)
    finally:
        engine.dispose()


def test_upgrade_on_sqlite(sqlite_url: str) -> None:
    assert upgrade(sqlite_url) == head_revision()
    assert_schema_matches_tables(sqlite_url)
    assert upgrade(sqlite_url) == head_revision()  # idempotent


def test_upgrade_on_postgresql(postgres_url: str) -> None:
    assert upgrade(postgres_url) == head_revision()
    assert_schema_matches_tables(postgres_url)


def test_downgrade_and_upgrade_again(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    assert downgrade(sqlite_url, "base") == "base"
    assert set(inspect(create_db_engine(sqlite_url)).get_table_names()) == {"alembic_version"}
    assert upgrade(sqlite_url) == head_revision()


def test_app_refuses_an_unmigrated_database(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with pytest.raises(DatabaseNotReady, match="margo db upgrade"):
        ServiceState.open(settings)


def test_unreachable_database_is_reported() -> None:
    engine = create_db_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseNotReady, match="cannot reach"):
        check_schema(engine)
