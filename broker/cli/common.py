"""What every command shares: the common flags, loading settings, opening the database."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

from broker import dev, logs
from broker.config import Settings
from broker.storage.db import Database, DatabaseError, EngineOptions
from broker.storage.schema import require_usable

# What each command group's register() adds to (not subscriptable at run time before Python 3.12).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A problem to report as one line on stderr with exit code 2."""


def common_flags() -> argparse.ArgumentParser:
    """The parent parser giving each command ``--config`` and ``--data-dir``."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML settings file (default: $BROKER_CONFIG)")
    parent.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="where state lives (SQLite database, dev keys); default ./var")
    return parent


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def load_settings(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None) -> Settings:
    """The command's settings; on a data directory made by `broker dev`, its dev settings under --config."""
    path = args.config or (Path(os.environ["BROKER_CONFIG"]) if os.environ.get("BROKER_CONFIG") else None)
    settings = dev.load_settings(path, args.data_dir, defaults)
    logs.configure(settings.logging.level, settings.logging.format)
    return settings


def open_database(settings: Settings, require_schema: bool = True) -> Database:
    try:
        database = Database(settings.database_url, EngineOptions(
            pool_size=settings.database.pool_size, max_overflow=settings.database.max_overflow,
            pool_timeout=settings.database.pool_timeout,
            sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms))
        database.ping()
        if require_schema:
            require_usable(database)
    except DatabaseError as exc:
        raise CliError(str(exc)) from None
    return database


@contextmanager
def database_errors() -> Iterator[None]:
    try:
        yield
    except DatabaseError as exc:
        raise CliError(str(exc)) from None


def actor() -> str:
    """Who is running this command, for the audit log: ``cli:<os user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns).rstrip())
