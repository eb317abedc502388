"""The service's ``margo`` commands, called through service.cli."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from service import cli
from service.db.migrate import head_revision, upgrade
from service.errors import DatabaseNotReady
from service.settings import Settings, get_settings
from tests.service.factories import corrupt, make_bundle


def ns(**kwargs: object) -> argparse.Namespace:
    return argparse.Namespace(**kwargs)


def test_service_commands_parse() -> None:
    parser = cli.build_parser(with_trainer=False)
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "9000", "--workers", "3"])
    assert (args.func, args.host, args.port, args.workers) == (cli.cmd_serve, "0.0.0.0", 9000, 3)
    args = parser.parse_args(["models", "register", "/x", "--activate"])
    assert (args.func, args.path, args.activate) == (cli.cmd_models_register, "/x", True)
    assert parser.parse_args(["db", "upgrade"]).func is cli.cmd_db_upgrade
    assert parser.parse_args(["models", "list"]).func is cli.cmd_models_list


def test_upgrade_register_activate_list(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    settings = make_settings()
    assert cli.cmd_db_upgrade(ns(revision="head"), settings) == 0
    assert f"is at revision {head_revision()}" in capsys.readouterr().out
    path = make_bundle(tmp_path / "v1")
    args = ns(path=str(path), activate=True, no_index=False, replace_catalogue=False)
    assert cli.cmd_models_register(args, settings) == 0
    assert capsys.readouterr().out.startswith("model v1: active (300 items, 40 users)")
    assert any((path / "index").iterdir())
    assert cli.cmd_models_list(ns(), settings) == 0
    out = capsys.readouterr().out
    assert "v1" in out and "active" in out


def test_register_refuses_a_corrupt_bundle(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    cli.cmd_db_upgrade(ns(revision="head"), settings)
    path = make_bundle(tmp_path / "bad")
    corrupt(path)
    with pytest.raises(Exception, match="checksum"):
        args = ns(path=str(path), activate=False, no_index=False, replace_catalogue=False)
        cli.cmd_models_register(args, settings)


def test_serve_refuses_an_unmigrated_database(make_settings: Callable[..., Settings]) -> None:
    args = ns(host="127.0.0.1", port=1, workers=1, log_level="info", access_log=False)
    with pytest.raises(DatabaseNotReady, match="margo db upgrade"):
        cli.cmd_serve(args, make_settings())


def test_errors_become_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MARGO_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    try:
        assert cli.main(["models", "list"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("margo: error:") and "margo db upgrade" in err[0]


def test_keys_create_list_revoke(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture
) -> None:
    from service.auth import verify_key
    from service.db.session import Database

    settings = make_settings()
    upgrade(settings.database_url)
    parser = cli.build_parser(with_trainer=False)
    args = parser.parse_args(["keys", "create", "--role", "admin", "--name", "ops"])
    assert args.func(args, settings) == 0
    captured = capsys.readouterr()
    key = captured.out.strip()
    assert key.startswith("mgk_") and "\n" not in key
    assert "shown only now" in captured.err
    prefix = key.split("_")[1]

    args = parser.parse_args(["keys", "list"])
    assert args.func(args, settings) == 0
    listing = capsys.readouterr().out
    assert prefix in listing and "admin" in listing and "ops" in listing
    assert key.split("_", 2)[2] not in listing  # the secret is never shown again

    db = Database(settings.database_url)
    try:
        with db.session() as session:
            assert verify_key(session, key) is not None
        args = parser.parse_args(["keys", "revoke", prefix])
        assert args.func(args, settings) == 0
        assert f"key {prefix} (admin) revoked" in capsys.readouterr().out
        with db.session() as session:
            assert verify_key(session, key) is None
    finally:
        db.dispose()


def test_keys_usage_errors_are_one_line(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    settings = make_settings()
    upgrade(settings.database_url)
    monkeypatch.setenv("MARGO_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        assert cli.main(["keys", "revoke", "nosuch"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no API key with prefix 'nosuch'" in err
        with pytest.raises(SystemExit) as exc:
            cli.main(["keys", "create", "--role", "root"])
        assert exc.value.code == 2
        assert "invalid choice: 'root'" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
