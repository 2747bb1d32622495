"""Prebuilt statements: the statements of the token side and of the sign-in, for either transaction lane.

A ``Prepared`` compiles its Core statement once per dialect and driver and runs the SQL without
SQLAlchemy's execution machinery: on the hot lane's connection (``broker.storage.hot``), or on a DBAPI
cursor of a cold-lane session's own connection, inside its transaction. Values go through the
conversions SQLAlchemy would apply (each type's public ``bind_processor`` and ``result_processor``), so
``UTCDateTime``, JSON and booleans read and write the same bytes in both lanes as through
``Session.execute``; in the cold lane, DBAPI errors come out as SQLAlchemy's exceptions, a disconnect
invalidating the connection as SQLAlchemy would. ``row=``: the named tuple its rows come back as, checked
against the statement's columns when the module loads.

For fixed, short statements that every token request or sign-in runs; everything else uses
``Session.execute``. A statement whose columns need Python-side defaults cannot be prepared.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import JSON
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement, Executable, Insert
from sqlalchemy.sql.compiler import SQLCompiler

from broker.storage.models import UTCDateTime

_CONNECTION = "broker.prepared.connection"  # session.info key: (transaction, SQLAlchemy connection)
MEMO_ROWS = 4096  # converted rows a ``memo`` statement keeps, then starts again


class Prepared:
    """A Core statement, compiled on first use for each dialect, run without SQLAlchemy's execution path.

    ``columns``: for an INSERT, the columns every execution gives (the statement is compiled for them).
    Rows come back as named tuples with the statement's column keys (labels included). ``memo``: rows
    that come back unchanged (a client's, a user's) are converted once and the same value returned again:
    found by the raw row itself, so a changed row is always converted afresh. Their values are shared:
    never mutate them.
    """

    def __init__(self, statement: Executable, columns: Sequence[str] | None = None, row: type | None = None,
                 memo: bool = False):
        if isinstance(statement, Insert) and columns is None:
            raise TypeError("an INSERT is prepared for the columns its executions give")
        self.statement = statement
        self.columns = list(columns) if columns is not None else None
        self.row = row
        self.memo = memo
        if row is not None and tuple(getattr(row, "_fields", ())) != _column_keys(statement):
            raise TypeError(f"{row.__name__} does not name the statement's columns {_column_keys(statement)}")
        self._compiled: dict[tuple[str, str], Compiled] = {}
        self._by_dialect: dict[int, tuple[Dialect, Compiled]] = {}  # the same, by the dialect object (faster)
        self._lock = threading.Lock()

    def rows(self, session: Session, params: Mapping[str, Any]) -> list[Any]:
        compiled, cursor = self._run(session, params)
        try:
            return compiled.rows(cursor.fetchall())
        finally:
            cursor.close()

    def first(self, session: Session, params: Mapping[str, Any]) -> Any:
        compiled, cursor = self._run(session, params)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else compiled.row(row)

    def scalar(self, session: Session, params: Mapping[str, Any]) -> Any:
        row = self.first(session, params)
        return None if row is None else row[0]

    def scalars(self, session: Session, params: Mapping[str, Any]) -> list[Any]:
        return [row[0] for row in self.rows(session, params)]

    def rowcount(self, session: Session, params: Mapping[str, Any]) -> int:
        """Run a statement without RETURNING; the number of rows it matched."""
        _compiled, cursor = self._run(session, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _run(self, session: Session, params: Mapping[str, Any]) -> tuple[Compiled, Any]:
        if session.autoflush:  # as Session.execute would: pending ORM changes reach the database first
            session.flush()
        connection = _connection(session)
        dialect = connection.dialect
        compiled = self.compiled(dialect)
        dbapi_connection = connection.connection.driver_connection
        values = compiled.values(params)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(compiled.sql, values)
        except dialect.loaded_dbapi.Error as error:
            cursor.close()
            raise _translated(connection, compiled.sql, error) from error
        return compiled, cursor

    def compiled(self, dialect: Dialect) -> Compiled:
        """The statement for ``dialect`` (psycopg's and asyncpg's PostgreSQL differ in their parameters)."""
        found = self._by_dialect.get(id(dialect))
        return found[1] if found is not None and found[0] is dialect else self._compile(dialect)

    def _compile(self, dialect: Dialect) -> Compiled:
        with self._lock:
            key = (dialect.name, dialect.driver)
            if key not in self._compiled:
                self._compiled[key] = Compiled(self.statement, dialect, self.columns, self.row, self.memo)
            self._by_dialect[id(dialect)] = (dialect, self._compiled[key])
            return self._compiled[key]


def _column_keys(statement: Executable) -> tuple[str, ...]:
    return tuple(column.key for column in getattr(statement, "exported_columns", ()))


class Compiled:
    """One statement for one dialect: its SQL, how to build its parameters, how to read its rows."""

    def __init__(self, statement: Executable, dialect: Dialect, columns: list[str] | None, row: type | None,
                 memo: bool = False):
        compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=dialect, column_keys=columns))
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise TypeError("a prepared statement cannot compute Python-side column defaults: give every column")
        self.sql = compiled.string
        given = {bind.key for bind in compiled.bind_names if bind.required}
        defaults = compiled.construct_params({key: None for key in given})
        self.constants = {name: value for name, value in defaults.items() if name not in given}
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            processor = _writer(bind.type, dialect)
            if processor is not None:
                self.processors[name] = processor
        self.positions = list(compiled.positiontup) if dialect.positional and compiled.positiontup else None
        result_columns = list(statement.exported_columns) if hasattr(statement, "exported_columns") else []
        readers = [_reader(column.type, dialect) for column in result_columns]
        self.converted = [(index, reader) for index, reader in enumerate(readers) if reader is not None]
        self.order = None if self.positions is None else [
            (name, self.processors.get(name), name in self.constants, self.constants.get(name))
            for name in self.positions]
        self.row_type: Any = row or NamedTuple("PreparedRow", [(column.key, Any) for column in result_columns])
        self._memo: dict[tuple[Any, ...], Any] | None = {} if memo and self.converted else None

    def values(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if self.order is not None:  # positional parameters: one pass in their order
            out = []
            for name, processor, constant, default in self.order:
                value = params[name] if not constant or name in params else default
                out.append(value if processor is None else processor(value))
            return out
        merged = {**self.constants, **params}
        for name, processor in self.processors.items():
            if name in merged:
                merged[name] = processor(merged[name])
        if self.positions is not None:
            return tuple(merged[name] for name in self.positions)
        return merged

    def rows(self, raw: list[Sequence[Any]]) -> list[Any]:
        return [self.row(values) for values in raw]

    def row(self, raw: Sequence[Any]) -> Any:
        if not self.converted:
            return self.row_type._make(raw)
        memo = self._memo
        if memo is None or type(raw) is not tuple:  # asyncpg's records: not kept
            return self._converted(raw)
        try:
            found = memo.get(raw)
        except TypeError:  # a driver that decodes JSON itself (psycopg): unhashable values
            return self._converted(raw)
        if found is None:
            if len(memo) >= MEMO_ROWS:
                memo.clear()
            found = memo[raw] = self._converted(raw)
        return found

    def _converted(self, raw: Sequence[Any]) -> Any:
        values = list(raw)
        for index, reader in self.converted:
            value = values[index]
            if value is not None:
                values[index] = reader(value)
        return self.row_type._make(values)


def _writer(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The type's bind processor for ``dialect``; for ``UTCDateTime`` the same conversion done directly."""
    if isinstance(type_, UTCDateTime):
        return _utc_text if dialect.name == "sqlite" else _utc_naive
    processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _reader(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    if isinstance(type_, UTCDateTime):
        return _utc_from_text if dialect.name == "sqlite" else _utc_aware
    if isinstance(type_, JSON) and dialect.name == "sqlite" and dialect._json_deserializer is None:
        return _json_from_text
    processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).result_processor(dialect, None)
    return processor


# UTCDateTime without TypeDecorator's layers: aware UTC in Python, naive UTC in the database, on SQLite as the
# text SQLAlchemy's SQLite dialect writes ("YYYY-MM-DD HH:MM:SS.ffffff"), so either lane reads what the other wrote.
def _utc_naive(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return (value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)).replace(tzinfo=None)


def _utc_text(value: dt.datetime | None) -> str | None:
    last = _last_text
    if value is last[0]:  # a request's statements mostly write its one ``now``
        return last[1]
    naive = _utc_naive(value)
    text = None if naive is None else naive.isoformat(" ", "microseconds")
    _remember_text(value, text)
    return text


def _remember_text(value: dt.datetime | None, text: str | None) -> None:
    global _last_text
    _last_text = (value, text)  # one tuple, swapped whole: safe across threads


_last_text: tuple[dt.datetime | None, str | None] = (None, None)


def _utc_aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC)


def _json_from_text(value: Any) -> Any:
    """SQLite's JSON column as SQLAlchemy's SQLite dialect reads it (a bare number comes back as one), in one call."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _utc_from_text(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


def _connection(session: Session) -> Any:
    """The session's SQLAlchemy connection in its current transaction (looked up once per transaction)."""
    transaction = session.get_transaction()
    cached = session.info.get(_CONNECTION)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1]
    connection = session.connection()
    session.info[_CONNECTION] = (session.get_transaction(), connection)
    return connection


def _translated(connection: Any, sql: str, error: Exception) -> sa_exc.StatementError:
    """The DBAPI error as SQLAlchemy raises it (``OperationalError``, ``IntegrityError`` ...), parameters
    hidden; a lost connection is invalidated so that the pool does not hand it out again."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(error, connection.connection.dbapi_connection, None)
    if lost:
        connection.invalidate(error)
    return sa_exc.DBAPIError.instance(sql, None, error, dialect.loaded_dbapi.Error, hide_parameters=True,
                                      connection_invalidated=lost, dialect=dialect)
