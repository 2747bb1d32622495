"""Engines, the two transaction lanes, and the schema-version check.

- The cold lane: SQLAlchemy sessions on worker threads. Async code calls ``await database.cold(fn, *args)``;
  the CLI and code already on a worker thread use ``with database.transaction() as session: ...``. Either
  commits on success and rolls back on error. Repository functions take a ``Session`` and never commit.
- The hot lane (``database.hot``, ``broker.storage.hot``): the token side's transactions on the event loop.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from broker.storage.hot import HotLane

T = TypeVar("T")
CONNECT_TIMEOUT_S = 5  # libpq: a new PostgreSQL connection that is not up by then fails (503, not a hang)


class DatabaseError(Exception):
    """The database is unreachable, misconfigured or at the wrong schema version (one clear line)."""


BUSY = "database is busy (SQLite: another transaction held the write lock too long)"


@dataclass(frozen=True)
class EngineOptions:
    pool_size: int = 10
    max_overflow: int = 10
    pool_timeout: float = 5.0
    sqlite_busy_timeout_ms: int = 5000
    # The server checkpoints the WAL from a background job (``Database.checkpoint``) so that no request's
    # COMMIT runs SQLite's automatic checkpoint (a copy and fsyncs while the write lock is held).
    sqlite_background_checkpoint: bool = False
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
        engine = create_engine(url, pool_size=options.pool_size, max_overflow=options.max_overflow,
                               pool_timeout=options.pool_timeout, echo=options.echo,
                               connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    except (NoSuchModuleError, ImportError):
        raise DatabaseError(f"database.url: unsupported database {parsed.get_backend_name()!r} "
                            "(use sqlite:///PATH or postgresql://...)") from None
    from broker.storage.models import add_postgresql_options  # the models' PostgreSQL-only options load here

    add_postgresql_options()
    event.listen(engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: hand out no connection the server has already closed.

    This replaces ``pool_pre_ping`` (a ``SELECT 1`` round trip on every checkout). When PostgreSQL
    ends a session (restart, ``pg_terminate_backend``, an idle timeout, a killed backend) it sends a
    FATAL message and closes the socket, so a pooled connection that is idle as it should be but has
    something to read, or is at end of file, is dead; one ``poll`` without waiting tells. Raising
    ``DisconnectionError`` makes the pool reconnect this record before handing it out (and if the
    database is down, the reconnect fails at once with ``OperationalError``). What neither this nor
    a ping can see quickly, a peer that vanished without closing, is left to ``connect_timeout`` and
    to SQLAlchemy invalidating the pool on the first disconnect error.
    """
    if dbapi_conn.closed or dbapi_conn.broken:
        raise DisconnectionError("the connection was closed")
    poller = select.poll()
    poller.register(dbapi_conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise DisconnectionError("the server closed the connection (or sent while it was idle)")


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
        if options.sqlite_background_checkpoint:
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    return engine


class Database:
    """An engine plus its session factory; the one handle the rest of the broker holds."""

    def __init__(self, url: str, options: EngineOptions = EngineOptions()):
        self.url = normalise_url(url)
        self.options = options
        self.engine = make_engine(self.url, options)
        self._hot: HotLane | None = None  # the hot lane (``hot``), made on first use
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def hot(self) -> HotLane:
        """The hot lane (``broker.storage.hot``): the token side's transactions, on the event loop."""
        if self._hot is None:
            from broker.storage import hot

            options, url = self.options, make_url(self.url)
            if self.dialect == "sqlite":
                self._hot = hot.SqliteLane(url.database or ":memory:", self.engine.dialect,
                                           options.sqlite_busy_timeout_ms, options.sqlite_background_checkpoint,
                                           cache_key=self.engine)
            else:
                dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
                self._hot = hot.PostgresLane(dsn, options.pool_size + options.max_overflow, options.pool_timeout,
                                             CONNECT_TIMEOUT_S, cache_key=self.engine)
        return self._hot

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """The cold lane's transaction, on the calling thread: the CLI, and code already on a worker thread.
        Async code goes through ``cold``."""
        with self.sessions() as session, session.begin():
            yield session

    async def cold(self, fn: Callable[..., T], *args: Any) -> T:
        """The cold lane: ``fn(session, *args)`` in one committed transaction on a worker thread (admin, console,
        SCIM, signals, sign-in pages). ``fn`` runs start to end on that thread and awaits nothing."""
        def run() -> T:
            with self.transaction() as session:
                return fn(session, *args)

        return await anyio.to_thread.run_sync(run)

    def checkpoint(self) -> None:
        """SQLite: copy committed WAL pages into the database file (``PASSIVE``: never waits for, nor blocks,
        readers or the writer), the background half of ``sqlite_background_checkpoint``. PostgreSQL: nothing."""
        if self.dialect != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def ping(self) -> None:
        """Raise ``DatabaseError`` unless a trivial query succeeds."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise DatabaseError(f"database unreachable: {first_line(exc)}") from None

    def schema_revision(self) -> str | None:
        """The alembic revision the database is at; None for an empty database."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError) as exc:
            if is_missing_table(exc):
                return None
            raise DatabaseError(f"database unreachable: {first_line(exc)}") from None

    def dispose(self) -> None:
        if self._hot is not None:
            self._hot.close_now()
        self.engine.dispose()


def is_missing_table(exc: Exception) -> bool:
    """The error says the table does not exist (SQLite, PostgreSQL)."""
    message = str(exc).lower()
    return "no such table" in message or "does not exist" in message and "relation" in message


def first_line(exc: Exception) -> str:
    """The driver's message, first line only: no SQL statement, no parameters."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__
