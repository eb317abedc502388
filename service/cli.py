"""The ``margo`` command: service commands here, trainer commands from ``trainer.cli``.

    margo serve [--host H] [--port P] [--workers N]   start the API (uvicorn, uvloop, httptools)
    margo db upgrade                                  create or migrate the database schema
    margo models register PATH [--activate]           verify a bundle, build its index, record it
    margo models list                                 model versions and their status
    margo worker [--burst]                            run retraining jobs from Redis (RQ)
    margo keys create --role R [--name N]             a new API key, printed once
    margo keys list | margo keys revoke PREFIX        the keys (never their secrets); revoke one
    margo train ... / margo ...                       see trainer/cli/ (one module per command)

Every MargoError or ServiceError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from service.errors import ServiceError, redact
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
    from service.db.session import Timeouts, create_db_engine
    from service.log_config import logging_config

    settings = settings or get_settings()
    # an unanswering server: one line and exit 2 within MARGO_DB_CONNECT_TIMEOUT_S
    engine = create_db_engine(settings.database_url, Timeouts.of(settings, statements=False))
    try:
        check_schema(engine)  # refuse early, with the command to run, before forking workers
    finally:
        engine.dispose()
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{shown}:{args.port}"
    if args.workers > 1:
        _metrics_dir_for_workers()
    print(f"MARGO API on {base}  (interactive docs: {base}/docs)", flush=True)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",  # the asyncio loop adds ~44 ms per keep-alive request with --workers
        # httptools plus header/body read deadlines and a header size limit (slow clients)
        http="service.slow_clients:GuardedHttpTools",
        timeout_keep_alive=settings.keep_alive_timeout_s,
        # off by default: uvicorn counts idle connections too, so slow clients would turn
        # every real request into a 503; bounded by the read deadlines instead
        limit_concurrency=args.limit_concurrency,
        log_level=args.log_level,
        log_config=logging_config(settings.log_format, args.log_level),  # applied in each worker
        access_log=args.access_log,
    )
    return 0


def _metrics_dir_for_workers() -> None:
    """Let every worker's counters reach /metrics: a shared, empty prometheus-client folder."""
    import os
    import tempfile
    from pathlib import Path

    from service.metrics import MULTIPROC_ENV

    folder = os.environ.get(MULTIPROC_ENV)
    if folder:  # given by the operator: drop the files of an earlier run, or they would add up
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
    else:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="margo-metrics-")


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

    db = Database.of(settings, statements=False)
    check_schema(db.engine)
    set_faiss_threads(settings.faiss_threads)
    client = redis_client(settings.redis_url) if settings.redis_url else None
    events = EventBus(client, prefix=settings.cache_prefix)
    return Registry(settings, db, NullCache(), events), db


def cmd_models_register(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or get_settings()
    registry, db = _open_registry(settings)
    try:
        row = registry.register(
            args.path,
            activate=args.activate,
            build_index=not args.no_index,
            replace_catalogue=args.replace_catalogue,
        )
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


def _open_db(settings: Settings) -> Database:
    from service.db.migrate import check_schema
    from service.db.session import Database

    db = Database.of(settings, statements=False)
    try:
        check_schema(db.engine)
    except Exception:
        db.dispose()
        raise
    return db


def cmd_keys_create(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from service.auth import create_api_key, parse_role

    role = parse_role(args.role)  # a bad role fails before touching the database
    db = _open_db(settings or get_settings())
    try:
        with db.session() as session:
            key = create_api_key(session, role, args.name)
    finally:
        db.dispose()
    # the key alone on stdout (scriptable); the advice on stderr
    print(key)
    print(
        f"margo: {role.value} key created; it is shown only now, store it (header X-API-Key)",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from service.auth import list_keys

    db = _open_db(settings or get_settings())
    try:
        with db.session() as session:
            rows = list_keys(session)
    finally:
        db.dispose()
    if not rows:
        print("no API keys; create one with `margo keys create --role admin`")
        return 0

    def when(value: object) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "-"

    print(f"{'prefix':10} {'role':6} {'created':16} {'last used':16} {'revoked':16} name")
    for r in rows:
        print(
            f"{r.prefix:10} {r.role:6} {when(r.created_at):16} {when(r.last_used_at):16} "
            f"{when(r.revoked_at):16} {r.name or ''}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from service.auth import revoke_key

    settings = settings or get_settings()
    db = _open_db(settings)
    try:
        with db.session() as session:
            row = revoke_key(session, args.prefix)
            prefix, role = row.prefix, row.role
    finally:
        db.dispose()
    ttl = settings.api_key_cache_ttl_s
    print(f"key {prefix} ({role}) revoked; running API processes refuse it within {ttl:g} s")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run retraining jobs from the RQ queue on Redis until stopped (or, --burst, drained)."""
    import redis
    from rq import Queue
    from rq.serializers import JSONSerializer

    from service.events import redis_client
    from service.jobs.lifecycle import sweep_stale
    from service.jobs.queue import QueueUnavailable, encode_queue_name
    from service.jobs.rq_worker import MargoWorker

    settings = settings or get_settings()
    if not settings.redis_url:
        raise QueueUnavailable(
            "margo worker needs MARGO_REDIS_URL; without Redis, `margo serve` runs "
            "retraining jobs on a thread of its own"
        )
    db = _open_db(settings)
    try:
        sweep_stale(db, settings)  # jobs of a worker that died before this one started
    finally:
        db.dispose()
    try:  # with short socket timeouts: a hung server is one line, not a hang
        redis_client(settings.redis_url).ping()
    except redis.RedisError as exc:
        raise QueueUnavailable(
            f"Redis at {redact(settings.redis_url)} does not answer: {exc}"
        ) from None
    client = redis.Redis.from_url(settings.redis_url)  # the worker's blocking pops wait long
    names = [encode_queue_name(settings), settings.queue_name]  # short encode jobs first
    queues = [Queue(n, connection=client, serializer=JSONSerializer) for n in names]
    worker = MargoWorker(queues, connection=client, serializer=JSONSerializer, name=args.name)
    print(f"margo worker {worker.name} on queues {', '.join(names)}", flush=True)
    worker.work(burst=args.burst, logging_level=args.log_level.upper())
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
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=None,
        help="answer 503 once a worker has this many connections or requests (default: none)",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="uvicorn's own access lines (MARGO_LOG_REQUESTS writes structured ones already)",
    )
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
    reg.add_argument(
        "--replace-catalogue",
        action="store_true",
        help="the bundle is of another dataset than the database holds: drop the old users, "
        "items and interactions, fail the old model versions, and activate this one",
    )
    reg.set_defaults(func=cmd_models_register)
    ls = models.add_parser("list", help="registered model versions")
    ls.set_defaults(func=cmd_models_list)

    worker = subparsers.add_parser(
        "worker", help="run retraining jobs from the Redis queue (MARGO_REDIS_URL)"
    )
    worker.add_argument("--name", default=None, help="worker name (default: RQ's, unique)")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(func=cmd_worker)

    keys = subparsers.add_parser("keys", help="API keys (roles read < write < admin)")
    keys = keys.add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key and print it (the only time it is shown)")
    create.add_argument("--role", required=True, choices=["read", "write", "admin"])
    create.add_argument("--name", default=None, help="a label for `margo keys list`")
    create.set_defaults(func=cmd_keys_create)
    keys.add_parser("list", help="keys by prefix, role and last use").set_defaults(
        func=cmd_keys_list
    )
    revoke = keys.add_parser("revoke", help="revoke the key with this prefix (see `keys list`)")
    revoke.add_argument("prefix", help="the key's prefix (the part after mgk_)")
    revoke.set_defaults(func=cmd_keys_revoke)


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


def _one_line(text: str) -> str:
    """The first line of an error (drivers append a second: a link to their docs), with any
    URL password masked."""
    lines = redact(text).strip().splitlines()
    return lines[0] if lines else "unknown error"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("service").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ServiceError as exc:
        print(f"margo: error: {_one_line(exc.detail)}", file=sys.stderr)
    except MargoError as exc:
        print(f"margo: error: {_one_line(str(exc))}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
