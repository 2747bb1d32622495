"""The hot lane reads and writes what the cold lane's sessions read and write, on both stores; it commits,
rolls back and waits for SQLite's write lock on the event loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from typing import NamedTuple

import psycopg
import pytest
from sqlalchemy import bindparam, func, insert, select, text

from broker.storage.db import BUSY, Database, DatabaseError, EngineOptions
from broker.storage.hot import Conflict
from broker.storage.models import AuditEvent, Client, Group
from broker.storage.prepared import Prepared

CLIENTS = Client.__table__
GROUPS = Group.__table__
EVENTS = AuditEvent.__table__
NOW = dt.datetime(2026, 12, 7, 9, 15, 30, 654321, tzinfo=dt.UTC)
EVENT_COLUMNS = ["occurred_at", "event_type", "actor", "user_id", "client_id", "server_id", "outcome", "data"]


class GroupRow(NamedTuple):
    id: str
    name: str
    created_at: dt.datetime


BY_ID = Prepared(select(*CLIENTS.c).where(CLIENTS.c.id == bindparam("client_id")))
GROUP = Prepared(select(GROUPS.c.id, GROUPS.c.name, GROUPS.c.created_at).where(GROUPS.c.id == bindparam("g")),
                 row=GroupRow)
ADD_GROUP = Prepared(insert(GROUPS), columns=["id", "source", "name", "external_id", "created_at"])
ADD_EVENT = Prepared(insert(EVENTS), columns=EVENT_COLUMNS)
BACKEND_PID = Prepared(select(func.pg_backend_pid().label("pid")))


def add_client(database: Database) -> None:
    with database.transaction() as session:
        session.add(Client(id="c1", name="Näme", kind="public", status="active", trusted=True,
                           token_endpoint_auth_method="none", redirect_uris=["http://127.0.0.1/cb"],
                           grant_types=["authorization_code"], metadata_={"nested": [1, "é", None]},
                           may_introspect=False, jwks={"keys": []}))


async def test_reads_what_a_session_reads(migrated: Database) -> None:
    add_client(migrated)
    with migrated.transaction() as session:
        expected = session.execute(BY_ID.statement, {"client_id": "c1"}).first()
    async with migrated.hot.read() as tx:
        row = await tx.first(BY_ID, {"client_id": "c1"})
        assert await tx.first(BY_ID, {"client_id": "nobody"}) is None
        assert await tx.scalar(BY_ID, {"client_id": "c1"}) == "c1"
    assert expected is not None and tuple(row) == tuple(expected)
    assert row.redirect_uris == ["http://127.0.0.1/cb"] and row.trusted is True and row.metadata == {
        "nested": [1, "é", None]}
    assert row.created_at.tzinfo is dt.UTC


async def test_writes_what_a_session_writes_and_rows_come_back_typed(migrated: Database) -> None:
    values = {"occurred_at": NOW, "event_type": "t", "actor": "a", "user_id": None, "client_id": None,
              "server_id": None, "outcome": "success", "data": {"k": ["é", 1, True]}}
    async with migrated.hot.write() as tx:
        assert await tx.rowcount(ADD_EVENT, values) == 1
        await tx.rowcount(ADD_GROUP, {"id": "g1", "source": "local", "name": "ops", "external_id": None,
                                      "created_at": NOW})
        row = await tx.first(GROUP, {"g": "g1"})
    with migrated.transaction() as session:
        session.execute(insert(EVENTS), values)
    with migrated.transaction() as session:
        raw = session.execute(text("SELECT occurred_at, data FROM audit_events ORDER BY id")).all()
        read = session.execute(select(EVENTS.c.occurred_at, EVENTS.c.data).order_by(EVENTS.c.id)).all()
    assert str(raw[0]) == str(raw[1])  # the same values stored by either lane
    assert read[0] == (NOW, {"k": ["é", 1, True]})
    assert isinstance(row, GroupRow) and row == GroupRow("g1", "ops", NOW)


def test_a_typed_row_must_name_the_statements_columns() -> None:
    with pytest.raises(TypeError, match="does not name"):
        Prepared(select(GROUPS.c.id, GROUPS.c.name), row=GroupRow)


async def test_an_error_rolls_back_and_after_commit_runs_only_after_a_commit(migrated: Database) -> None:
    seen: list[str] = []
    with pytest.raises(RuntimeError):
        async with migrated.hot.write() as tx:
            await tx.rowcount(ADD_GROUP, {"id": "g1", "source": "local", "name": "ops", "external_id": None,
                                          "created_at": NOW})
            tx.after_commit(lambda: seen.append("rolled back"))
            raise RuntimeError("boom")
    async with migrated.hot.write() as tx:
        assert await tx.first(GROUP, {"g": "g1"}) is None
        tx.after_commit(lambda: seen.append("committed"))
        assert seen == []
    assert seen == ["committed"]


async def test_a_duplicate_key_is_a_conflict_and_the_lane_goes_on(migrated: Database) -> None:
    group = {"id": "g1", "source": "local", "name": "ops", "external_id": None, "created_at": NOW}
    async with migrated.hot.write() as tx:
        await tx.rowcount(ADD_GROUP, group)
    with pytest.raises(Conflict):
        async with migrated.hot.write() as tx:
            await tx.rowcount(ADD_GROUP, {**group, "id": "g2"})  # (source, name) is unique
    async with migrated.hot.read() as tx:
        assert (await tx.first(GROUP, {"g": "g1"})).name == "ops"


@pytest.fixture
def sqlite_database(tmp_path) -> Database:
    from broker.storage.migrate import upgrade

    database = Database(f"sqlite:///{tmp_path / 'hot.db'}", EngineOptions(sqlite_busy_timeout_ms=1500))
    upgrade(database)
    yield database
    database.dispose()


async def test_sqlite_waits_for_another_connections_write_lock_without_blocking_the_loop(
        sqlite_database: Database, tmp_path) -> None:
    other = sqlite3.connect(tmp_path / "hot.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def write() -> float:
        async with sqlite_database.hot.write() as tx:
            await tx.rowcount(ADD_GROUP, {"id": "g1", "source": "local", "name": "ops", "external_id": None,
                                          "created_at": NOW})
        return time.monotonic()

    ticker = asyncio.create_task(ticking())
    writer = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    assert not writer.done() and ticks >= 10  # waiting, and the loop kept running
    released = time.monotonic()
    other.execute("COMMIT")
    done = await writer
    ticker.cancel()
    other.close()
    assert done - released < 0.1  # picked up within the longest wait between looks
    async with sqlite_database.hot.read() as tx:
        assert (await tx.first(GROUP, {"g": "g1"})).name == "ops"


async def test_sqlite_gives_up_after_the_busy_timeout_with_nothing_done(sqlite_database: Database,
                                                                           tmp_path) -> None:
    other = sqlite3.connect(tmp_path / "hot.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    ran = False
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseError, match="busy") as refused:
            async with sqlite_database.hot.write():
                ran = True
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert str(refused.value) == BUSY and not ran
    assert 1.4 < time.monotonic() - started < 3


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_unreachable_is_a_database_error(database_url: str) -> None:
    database = Database("postgresql://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(DatabaseError, match="unavailable"):
            async with database.hot.write():
                pass
    finally:
        database.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_a_killed_connection_is_a_database_error_then_replaced(migrated: Database,
                                                                                postgres_server) -> None:
    async with migrated.hot.read() as tx:
        pid = await tx.scalar(BACKEND_PID, {})
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    await asyncio.sleep(0.2)
    try:
        async with migrated.hot.read() as tx:
            again = await tx.scalar(BACKEND_PID, {})
    except DatabaseError:  # the dead connection was in use: the next transaction gets a new one
        async with migrated.hot.read() as tx:
            again = await tx.scalar(BACKEND_PID, {})
    assert again != pid


def _server_ends_the_session(connection) -> None:
    """What PostgreSQL sends every idle session when it shuts down (57P01), delivered before the socket closes:
    the moment a request may take the connection from the pool. Fed to asyncpg's protocol directly, since
    over a real socket the close follows within microseconds."""
    fields = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0"
    connection._protocol.data_received(b"E" + (len(fields) + 4).to_bytes(4, "big") + fields)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_a_pooled_connection_the_server_ended_is_replaced_not_used(migrated: Database) -> None:
    async with migrated.hot.read() as tx:
        pid = await tx.scalar(BACKEND_PID, {})
    (pooled,) = migrated.hot._idle  # type: ignore[attr-defined]
    _server_ends_the_session(pooled)
    async with migrated.hot.read() as tx:
        again = await tx.scalar(BACKEND_PID, {})
    assert again != pid and pooled.is_closed()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_a_transaction_cancelled_mid_statement_ends_its_connection(migrated: Database) -> None:
    started = asyncio.Event()
    pids: list[int] = []

    async def sleeping() -> None:
        async with migrated.hot.write() as tx:
            pids.append(await tx.scalar(BACKEND_PID, {}))
            started.set()
            await tx.scalar(Prepared(select(func.pg_sleep(5).label("slept"))), {})

    task = asyncio.create_task(sleeping())
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert migrated.hot._idle == []  # type: ignore[attr-defined]  # terminated, not pooled mid-operation
    async with migrated.hot.read() as tx:
        assert await tx.scalar(BACKEND_PID, {}) != pids[0]


async def test_a_savepoint_undoes_only_its_part(migrated: Database) -> None:
    group = {"id": "g1", "source": "local", "name": "ops", "external_id": None, "created_at": NOW}
    async with migrated.hot.write() as tx:
        await tx.rowcount(ADD_GROUP, group)
        with pytest.raises(Conflict):
            async with tx.savepoint():
                await tx.rowcount(ADD_GROUP, {**group, "id": "g2", "name": "sre"})
                await tx.rowcount(ADD_GROUP, {**group, "id": "g3"})  # (source, name) taken: the part is undone
        await tx.rowcount(ADD_GROUP, {**group, "id": "g4", "name": "dev"})
    async with migrated.hot.read() as tx:
        assert [await tx.first(GROUP, {"g": g}) is not None for g in ("g1", "g2", "g3", "g4")] == [
            True, False, False, True]
