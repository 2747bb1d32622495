"""The hot lane: the token side's transactions, run on the event loop.

One way to run a transaction here: ``async with database.hot.write() as tx`` (or ``read()``), then
``await tx.first(statement, params)`` and friends with ``Prepared`` statements, which read and write
exactly as the cold lane's sessions do (SQLAlchemy's own type processing, compiled once per dialect).

- SQLite: one connection of this process, used only on the loop. A write begins ``IMMEDIATE``, so it
  holds the write lock before its first statement and no statement can wait afterwards; while another
  connection (a worker thread's, another process's) holds the lock, the transaction waits with
  ``await``, never in SQLite's busy handler, for up to the busy timeout. Statements take microseconds,
  so transactions run one after another, each without a pause (an ``asyncio.Lock`` keeps them apart).
- PostgreSQL: asyncpg connections from a small pool of this lane's own.

The transaction commits when the block ends; an exception rolls it back. ``tx.after_commit(fn)``
runs ``fn`` once it has committed (the audit observers).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy.engine import Dialect

from broker.storage.db import BUSY, DatabaseError
from broker.storage.prepared import Compiled, Prepared

BUSY_FIRST_WAIT_S = 0.0005  # SQLite: the first look again at a write lock another connection holds ...
BUSY_LONGEST_WAIT_S = 0.002  # ... then twice as long each time, up to this
UNAVAILABLE = "database unavailable"


class Conflict(Exception):
    """A unique constraint refused the statement (another request stored the same key first)."""


class Tx:
    """One transaction of the hot lane. Statements are awaited; on SQLite nothing actually pauses."""

    dialect: str

    def __init__(self, cache_key: Any) -> None:
        self.cache_key = cache_key  # what in-process caches of this database are kept under (its engine)
        self._after: list[Callable[[], None]] = []
        self._savepoints = 0

    async def first(self, statement: Prepared, params: Mapping[str, Any]) -> Any:
        rows = await self.rows(statement, params)
        return rows[0] if rows else None

    async def scalar(self, statement: Prepared, params: Mapping[str, Any]) -> Any:
        row = await self.first(statement, params)
        return None if row is None else row[0]

    async def scalars(self, statement: Prepared, params: Mapping[str, Any]) -> list[Any]:
        return [row[0] for row in await self.rows(statement, params)]

    async def rows(self, statement: Prepared, params: Mapping[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def rowcount(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        raise NotImplementedError

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A part of the transaction that an exception undoes alone (``Conflict`` included) before it goes on."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        await self._raw(f"SAVEPOINT {name}")
        try:
            yield
        except Exception:  # a cancellation ends the whole transaction, and on PostgreSQL its connection
            await self._raw(f"ROLLBACK TO SAVEPOINT {name}")
            await self._raw(f"RELEASE SAVEPOINT {name}")
            raise
        await self._raw(f"RELEASE SAVEPOINT {name}")

    async def _raw(self, sql: str) -> None:
        raise NotImplementedError

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after.append(callback)

    def _committed(self) -> None:
        for callback in self._after:
            callback()


class HotLane:
    """What the token side holds: ``write()`` and ``read()`` transactions, and ``close()``."""

    dialect: str

    def write(self) -> AbstractAsyncContextManager[Tx]:
        raise NotImplementedError

    def read(self) -> AbstractAsyncContextManager[Tx]:
        raise NotImplementedError

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """Close every connection without awaiting (a process or a test that ends)."""


# ---------------------------------------------------------------------------------------------- SQLite


class _SqliteTx(Tx):
    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection, sa_dialect: Dialect, cache_key: Any):
        super().__init__(cache_key)
        self._connection = connection
        self._sa = sa_dialect

    async def rows(self, statement: Prepared, params: Mapping[str, Any]) -> list[Any]:
        compiled = statement.compiled(self._sa)
        cursor = self._execute(compiled, params)
        try:
            return compiled.rows(cursor.fetchall())
        finally:
            cursor.close()

    async def first(self, statement: Prepared, params: Mapping[str, Any]) -> Any:
        compiled = statement.compiled(self._sa)
        cursor = self._execute(compiled, params)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else compiled.row(row)

    async def rowcount(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        cursor = self._execute(statement.compiled(self._sa), params)
        count = cursor.rowcount
        cursor.close()
        return int(count)

    async def _raw(self, sql: str) -> None:
        self._connection.execute(sql)

    def _execute(self, compiled: Compiled, params: Mapping[str, Any]) -> sqlite3.Cursor:
        try:
            return self._connection.execute(compiled.sql, compiled.values(params))
        except sqlite3.IntegrityError as error:
            if "UNIQUE" in str(error) or "PRIMARY KEY" in str(error):
                raise Conflict(str(error).split(":")[0]) from None
            raise
        except sqlite3.OperationalError as error:  # the disk, the file: not the statement
            raise DatabaseError(f"{UNAVAILABLE}: {error}") from None


class SqliteLane(HotLane):
    dialect = "sqlite"

    def __init__(self, path: str, sa_dialect: Dialect, busy_timeout_ms: int, background_checkpoint: bool,
                 cache_key: Any = None):
        self._cache_key = cache_key
        self._path = path
        self._sa = sa_dialect
        self._busy_timeout_s = busy_timeout_ms / 1000
        self._background_checkpoint = background_checkpoint
        self._connection: sqlite3.Connection | None = None
        self._turns: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def write(self) -> AbstractAsyncContextManager[Tx]:
        return self._transaction("BEGIN IMMEDIATE")

    def read(self) -> AbstractAsyncContextManager[Tx]:
        return self._transaction("BEGIN")

    @asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[Tx]:
        async with self._turn():
            connection = await self._begin(begin)
            tx = _SqliteTx(connection, self._sa, self._cache_key)
            try:
                yield tx
            except BaseException:
                self._end(connection, "ROLLBACK")
                raise
            self._end(connection, "COMMIT")
        tx._committed()

    def _turn(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._turns.get(loop)
        if lock is None:
            self._turns = {loop: (lock := asyncio.Lock())}  # the app's loop; a test's earlier loops are gone
        return lock

    async def _begin(self, begin: str) -> sqlite3.Connection:
        """``BEGIN`` on this lane's connection; while the write lock is taken elsewhere, wait on the loop."""
        deadline, wait = time.monotonic() + self._busy_timeout_s, BUSY_FIRST_WAIT_S
        while True:
            connection = self._connect()
            try:
                connection.execute(begin)
                return connection
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    self._drop()
                    raise DatabaseError(f"{UNAVAILABLE}: {error}") from None
            if time.monotonic() >= deadline:
                raise DatabaseError(BUSY)
            await asyncio.sleep(wait)
            wait = min(wait * 2, BUSY_LONGEST_WAIT_S)

    def _end(self, connection: sqlite3.Connection, how: str) -> None:
        try:
            if connection.in_transaction:
                connection.execute(how)
        except sqlite3.Error as error:
            self._drop()  # never leave the write lock held
            if how == "COMMIT":
                raise DatabaseError(f"{UNAVAILABLE}: {error}") from None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            try:
                connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                                             timeout=0, cached_statements=256)
                for pragma in ("journal_mode=WAL", "busy_timeout=0", "foreign_keys=ON", "synchronous=NORMAL"):
                    connection.execute(f"PRAGMA {pragma}")
                if self._background_checkpoint:
                    connection.execute("PRAGMA wal_autocheckpoint=0")
            except sqlite3.Error as error:
                raise DatabaseError(f"{UNAVAILABLE}: {error}") from None
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.close()
            except sqlite3.Error:
                pass

    def close_now(self) -> None:
        self._drop()


# ---------------------------------------------------------------------------------------------- PostgreSQL


class _PostgresTx(Tx):
    dialect = "postgresql"

    def __init__(self, connection: Any, sa_dialect: Dialect, errors: Any, cache_key: Any):
        super().__init__(cache_key)
        self._connection = connection
        self._sa = sa_dialect
        self._errors = errors

    async def rows(self, statement: Prepared, params: Mapping[str, Any]) -> list[Any]:
        compiled = statement.compiled(self._sa)
        try:
            records = await self._connection.fetch(compiled.sql, *compiled.values(params))
        except self._errors.UniqueViolationError as error:
            raise Conflict(type(error).__name__) from None
        return compiled.rows(records)

    async def _raw(self, sql: str) -> None:
        await self._connection.execute(sql)

    async def rowcount(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        compiled = statement.compiled(self._sa)
        try:
            status = await self._connection.execute(compiled.sql, *compiled.values(params))
        except self._errors.UniqueViolationError as error:
            raise Conflict(type(error).__name__) from None
        return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0


class PostgresLane(HotLane):
    """asyncpg connections, at most ``size``, opened on demand and kept; a broken one is dropped."""

    dialect = "postgresql"

    def __init__(self, dsn: str, size: int, acquire_timeout: float, connect_timeout: float, cache_key: Any = None):
        import asyncpg  # only where PostgreSQL serves
        from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

        self._cache_key = cache_key
        self._asyncpg = asyncpg
        self._sa = asyncpg_dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves this one unannotated
        errors = asyncpg.exceptions
        # What a restart, a failover or a network fault raises: 503 and a new connection, never a 500. A
        # connection told to end while idle (a shutdown) is left mid-message: InternalClientError at its next use.
        self._lost: tuple[type[BaseException], ...] = (
            OSError, TimeoutError, errors.InterfaceError, errors.InternalClientError, errors.PostgresConnectionError,
            errors.OperatorInterventionError, errors.InsufficientResourcesError)
        self._dsn, self._size = dsn, size
        self._acquire_timeout, self._connect_timeout = acquire_timeout, connect_timeout
        self._idle: list[Any] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def write(self) -> AbstractAsyncContextManager[Tx]:
        return self._transaction()

    read = write  # READ COMMITTED either way; a read-only transaction would cost a round trip more

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        connection = await self._begin()
        healthy = False  # only a connection that finished its transaction goes back; any other is terminated
        try:
            tx = _PostgresTx(connection, self._sa, self._asyncpg.exceptions, self._cache_key)
            try:
                yield tx
            except Exception as error:
                if not isinstance(error, self._lost):  # the statement failed, not the connection
                    await connection.execute("ROLLBACK")
                    healthy = True
                raise
            await connection.execute("COMMIT")
            healthy = True
        except self._lost as error:
            raise DatabaseError(f"{UNAVAILABLE}: {type(error).__name__}") from None
        finally:
            self._release(connection, healthy)
        tx._committed()

    async def _begin(self) -> Any:
        """A connection in a new transaction. When a pooled one fails to begin, the server went away since its
        last use and its pooled peers with it: they are all closed and a new connection tries once more."""
        connection, pooled = await self._acquire()
        if await self._began(connection, may_retry=pooled):
            return connection
        self.close_now()
        connection, _ = await self._acquire()
        await self._began(connection, may_retry=False)
        return connection

    async def _began(self, connection: Any, may_retry: bool) -> bool:
        try:
            await connection.execute("BEGIN")
            return True
        except self._lost as error:
            self._release(connection, False)
            if not may_retry:
                raise DatabaseError(f"{UNAVAILABLE}: {type(error).__name__}") from None
            return False
        except BaseException:
            self._release(connection, False)
            raise

    async def _acquire(self) -> tuple[Any, bool]:
        """A connection, and whether it was pooled (used before) rather than opened now."""
        self._bind_loop()
        deadline = time.monotonic() + self._acquire_timeout
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection, True
                self._open -= 1
            if self._open < self._size:
                return await self._connect(), False
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                    await waiter
            except TimeoutError:
                raise DatabaseError(f"{UNAVAILABLE}: no connection free within "
                                    f"{self._acquire_timeout:g} s") from None
            finally:
                waiter.cancel()

    async def _connect(self) -> Any:
        self._open += 1
        try:
            connection = await self._asyncpg.connect(self._dsn, timeout=self._connect_timeout,
                                                     statement_cache_size=256)
            await connection.set_type_codec("json", encoder=str.encode, decoder=_json_from_bytes,
                                            schema="pg_catalog", format="binary")
        except (*self._lost, self._asyncpg.exceptions.PostgresError) as error:
            self._open -= 1
            self._wake()
            raise DatabaseError(f"{UNAVAILABLE}: {type(error).__name__}") from None
        return connection

    def _release(self, connection: Any, healthy: bool) -> None:
        if healthy and not connection.is_closed() and not connection.is_in_transaction():
            self._idle.append(connection)
        else:
            _abandon(connection)
            self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _bind_loop(self) -> None:
        """A pool serves one event loop: when a new loop takes over (a test's), the old loop's connections go."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                self.close_now()
            self._loop = loop

    def close_now(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            _abandon(connection)
        self._open -= len(idle)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for connection in idle:
            try:
                await connection.close(timeout=2)
            except (OSError, TimeoutError, self._asyncpg.exceptions.InterfaceError):
                _abandon(connection)


def _abandon(connection: Any) -> None:
    """Close a connection without a goodbye; also when its event loop has closed (a test's)."""
    try:
        connection.terminate()
    except RuntimeError:  # asyncpg closes through the loop: close the socket itself
        sock = getattr(getattr(connection, "_transport", None), "_sock", None)
        if sock is not None:
            sock.close()


def _json_from_bytes(value: bytes) -> Any:
    return json.loads(value)
