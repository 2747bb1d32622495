"""``broker dev`` and ``broker serve``: run the HTTP server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from broker import bundled, dev
from broker.cli.common import CliError, Commands, common_flags, database_errors, load_settings, open_database
from broker.config import Settings
from broker.storage.db import DatabaseError

if TYPE_CHECKING:
    from broker.web.state import BrokerState


def register(commands: Commands) -> None:
    dev_p = commands.add_parser(
        "dev", parents=[common_flags()], help="run with embedded defaults (SQLite, test IdP, demo data)",
        description="Run the broker for development: SQLite under the data directory, the built-in test IdP "
                    "with demo users alice, bob and carol, and the demo MCP server. Never for production.")
    dev_p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    dev_p.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    dev_p.set_defaults(handler=run_dev)
    serve_p = commands.add_parser(
        "serve", parents=[common_flags()], help="run the production server (uvicorn)",
        description="Serve the broker with uvicorn. The schema must be current (`broker db upgrade`).")
    serve_p.add_argument("--host", help="interface to bind (default: server.host)")
    serve_p.add_argument("--port", type=int, help="port to bind (default: server.port)")
    serve_p.add_argument("--workers", type=int, help="worker processes (default: server.workers)")
    serve_p.set_defaults(handler=run_serve)


def run_dev(args: argparse.Namespace) -> int:
    _check_installation("templates", "static files", "migrations")
    _check_port(args.port)
    data_dir = args.data_dir or Path("var")
    settings = load_settings(args, defaults=dev.defaults(args.host, args.port, data_dir))
    database = open_database(settings, require_schema=False)
    from broker.storage import migrate  # alembic only in the commands that migrate (broker.storage.schema)

    with database_errors():
        migrate.upgrade(database)
        with database.transaction() as session:
            dev.seed(session, settings.issuer)
            dev.seed_policy(session)
            dev.seed_feed_client(session, dev.demo_feed_secret(settings))
    state = _prepared_state(settings)
    print(dev.banner(settings), flush=True)
    import uvicorn

    from broker.web import create_app

    app = create_app(state, fallback=dev.demo_app(settings.issuer, dev.demo_feed_secret(settings)))
    uvicorn.run(app, host=args.host, port=args.port, proxy_headers=False, **server_options(settings))
    return 0


class ServerOptions(TypedDict):
    log_config: None
    access_log: bool
    server_header: bool
    timeout_keep_alive: int
    h11_max_incomplete_event_size: int
    timeout_graceful_shutdown: int


def server_options(settings: Settings) -> ServerOptions:
    """What both commands tell uvicorn: our logging only, and its share of bounding a connection (idle keep-alive,
    the header size its h11 parser allows: the app answers 431 past ``server.max_header_bytes`` whichever parser
    runs, and how long requests in flight may take after a SIGTERM)."""
    from broker.web import shutdown

    graceful = shutdown.Plan.of(settings.server).graceful
    return {"log_config": None, "access_log": False, "server_header": False,
            "timeout_keep_alive": settings.server.keep_alive_timeout,
            "h11_max_incomplete_event_size": settings.server.max_header_bytes,
            "timeout_graceful_shutdown": graceful}  # type: ignore[typeddict-item]  # uvicorn runs asyncio.timeout(): a float works


def _check_installation(*parts: str) -> None:
    if missing := bundled.incomplete(*parts):
        raise CliError(missing)


def _check_port(port: int | None) -> None:
    if port is not None and not 0 < port < 65536:
        raise CliError(f"--port: {port} is not a valid port (1-65535)")


def run_serve(args: argparse.Namespace) -> int:
    _check_installation("templates", "static files")
    _check_port(args.port)
    settings = load_settings(args)
    checked = _prepared_state(settings)  # fail here, once, before forking workers
    checked.database.dispose()
    if checked.metrics is not None:
        checked.metrics.close()
    if args.config:
        os.environ["BROKER_CONFIG"] = str(args.config.resolve())
    if args.data_dir:
        os.environ["BROKER_DATA_DIR"] = str(args.data_dir)
    workers = args.workers or settings.server.workers
    if workers < 1:
        raise CliError("--workers: must be at least 1")
    if workers > 1 and checked.database.dialect == "sqlite":
        print(f"broker: warning: {workers} workers on SQLite share one file and its single write lock (they wait "
              "for each other, and fail with 'database is locked' past database.sqlite_busy_timeout_ms); use "
              "PostgreSQL for more than one worker", file=sys.stderr, flush=True)
    os.environ["BROKER_SERVER__WORKERS"] = str(workers)  # each worker enforces its share of every rate limit
    import uvicorn

    from broker.observability.workers import shared_by_workers

    with shared_by_workers(settings.metrics, workers):
        uvicorn.run("broker.app:create_app_from_environment", factory=True, workers=workers,
                    host=args.host or settings.server.host, port=args.port or settings.server.port,
                    forwarded_allow_ips=settings.server.forwarded_allow_ips, **server_options(settings))
    return 0


def _prepared_state(settings: Settings) -> BrokerState:
    """The state both commands serve, built and checked; the web stack is imported here, not by every command."""
    from broker.app import StartupError, build_state, prepare

    try:
        state = build_state(settings)
        prepare(state)
    except (StartupError, DatabaseError) as exc:
        raise CliError(str(exc)) from None
    return state
