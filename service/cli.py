"""The ``margo`` command: service commands here, trainer commands from ``trainer.cli``.

    margo serve [--host H] [--port P] [--workers N]   start the API (uvicorn, uvloop, httptools)
    margo db upgrade                                  create or migrate the database schema
    margo models register PATH [--activate]           verify a bundle, build its index, record it
    margo models list                                 model versions and their status
    margo train ... / margo ...                       see trainer/cli.py

Every MargoError or ServiceError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from service.errors import ServiceError
from service.settings import Settings, get_settings
from trainer.cli import OneLineParser
from trainer.errors import MargoError

if TYPE_CHECKING:
    from service.db.session import Database
    from service.registry import Registry

EXIT_ERROR = 2


# -- commands ----------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace, settings: Settings | None = None) -> int:
    import uvicorn

    from service.db.migrate import check_schema
    from service.db.session import create_db_engine

    settings = settings or get_settings()
    engine = create_db_engine(settings.database_url)
    try:
        check_schema(engine)  # refuse early, with the command to run, before forking workers
    finally:
        engine.dispose()
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{shown}:{args.port}"
    print(f"MARGO API on {base}  (interactive docs: {base}/docs)", flush=True)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",  # the asyncio loop adds ~44 ms per keep-alive request with --workers
        http="httptools",
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from service.db.migrate import upgrade

    settings = settings or get_settings()
    revision = upgrade(settings.database_url, args.revision)
    print(f"database {_shown_url(settings.database_url)} is at revision {revision}")
    return 0


def _open_registry(settings: Settings) -> tuple[Registry, Database]:
    from service.cache import NullCache
    from service.db.migrate import check_schema
    from service.db.session import Database
    from service.events import EventBus
    from service.index import set_faiss_threads
    from service.registry import Registry
    from service.state import redis_client

    db = Database(settings.database_url)
    check_schema(db.engine)
    set_faiss_threads(settings.faiss_threads)
    client = redis_client(settings.redis_url) if settings.redis_url else None
    events = EventBus(client, prefix=settings.cache_prefix)
    return Registry(settings, db, NullCache(), events), db


def cmd_models_register(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    registry, db = _open_registry(settings)
    try:
        row = registry.register(args.path, activate=args.activate, build_index=not args.no_index)
    finally:
        db.dispose()
    print(f"model {row.version}: {row.status} ({row.n_items} items, {row.n_users} users)")
    return 0


def cmd_models_list(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    registry, db = _open_registry(settings)
    try:
        rows = registry.versions()
    finally:
        db.dispose()
    if not rows:
        print("no model versions; register one with `margo models register PATH --activate`")
        return 0
    print(f"{'version':32} {'status':9} {'items':>9} {'users':>9}  created")
    for r in rows:
        created = f"{r.created_at:%Y-%m-%d %H:%M}"
        print(f"{r.version:32} {r.status:9} {r.n_items:9d} {r.n_users:9d}  {created}")
    return 0


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# -- parser ------------------------------------------------------------------------------------
def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """The service's subcommands; each sets ``func`` and returns an exit code."""
    serve = subparsers.add_parser("serve", help="start the recommendation API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False)
    serve.set_defaults(func=cmd_serve)

    db = subparsers.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    up = db.add_parser("upgrade", help="create or migrate the schema (MARGO_DATABASE_URL)")
    up.add_argument("--revision", default="head")
    up.set_defaults(func=cmd_db_upgrade)

    models = subparsers.add_parser("models", help="model registry").add_subparsers(
        dest="models_command", required=True
    )
    reg = models.add_parser("register", help="verify a model bundle and record it as ready")
    reg.add_argument("path", help="model bundle directory (written by `margo train --out`)")
    reg.add_argument("--activate", action="store_true", help="also make it the live model")
    reg.add_argument("--no-index", action="store_true", help="do not build the index now")
    reg.set_defaults(func=cmd_models_register)
    ls = models.add_parser("list", help="registered model versions")
    ls.set_defaults(func=cmd_models_list)


def build_parser(*, with_trainer: bool = True) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="margo", description="MARGO multimodal recommender: train, register and serve models"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(subparsers)
    if with_trainer:
        from trainer.cli import add_commands as add_trainer_commands

        add_trainer_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("service").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ServiceError as exc:
        print(f"margo: error: {exc.detail}", file=sys.stderr)
    except MargoError as exc:
        print(f"margo: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
