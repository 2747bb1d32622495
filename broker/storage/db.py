"""Engines, sessions and the schema-version check.

Callers own transactions: ``with database.transaction() as session: ...`` commits on success
and rolls back on error. Repository functions take a ``Session`` and never commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class DatabaseError(Exception):
    """The database is unreachable, misconfigured or at the wrong schema version (one clear line)."""


@dataclass(frozen=True)
class EngineOptions:
    pool_size: int = 10
    max_overflow: int = 10
    pool_timeout: float = 5.0
    sqlite_busy_timeout_ms: int = 5000
    echo: bool = False


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (``postgres://`` included)."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, options: EngineOptions = EngineOptions()) -> Engine:
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError("database.url: not a valid database URL") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(url, parsed.database, options)
        return create_engine(url, pool_size=options.pool_size, max_overflow=options.max_overflow,
                             pool_timeout=options.pool_timeout, pool_pre_ping=True, echo=options.echo,
                             connect_args={"connect_timeout": 5})
    except (NoSuchModuleError, ImportError):
        raise DatabaseError(f"database.url: unsupported database {parsed.get_backend_name()!r} "
                            "(use sqlite:///PATH or postgresql://...)") from None


def _sqlite_engine(url: str, database: str | None, options: EngineOptions) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=options.echo,
                           connect_args={"timeout": options.sqlite_busy_timeout_ms / 1000,
                                         "check_same_thread": False})
    busy = int(options.sqlite_busy_timeout_ms)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cur.execute(f"PRAGMA busy_timeout={busy}")  # wait for the write lock instead of failing
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode up to the last checkpoint
        cur.close()

    return engine


class Database:
    """An engine plus its session factory; the one handle the rest of the broker holds."""

    def __init__(self, url: str, options: EngineOptions = EngineOptions()):
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, options)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Raise ``DatabaseError`` unless a trivial query succeeds."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise DatabaseError(f"database unreachable: {_first_line(exc)}") from None

    def schema_revision(self) -> str | None:
        """The alembic revision the database is at; None for an empty database."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError) as exc:
            if _is_missing_table(exc):
                return None
            raise DatabaseError(f"database unreachable: {_first_line(exc)}") from None

    def dispose(self) -> None:
        self.engine.dispose()


def _is_missing_table(exc: Exception) -> bool:
    message = str(exc).lower()
    return "no such table" in message or "does not exist" in message and "relation" in message


def _first_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__
