"""Inline transactions that find this process's SQLite write queue taken wait for it on the event loop
(``broker.web.write_queue``), then run inline; another process's write lock still sends them to a
worker thread, and a queue held past the busy timeout is the same "database is busy" as on a thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from broker.storage.db import BUSY, Database, DatabaseError, EngineOptions
from broker.web import oauth_http
from broker.web.oauth_http import in_transaction
from broker.web.write_queue import InlineQueue


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


def _database(path: Path, busy_ms: int) -> Database:
    database = Database(f"sqlite:///{path}", EngineOptions(sqlite_busy_timeout_ms=busy_ms))
    with database.transaction() as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS notes (body TEXT)"))
    return database


@pytest.fixture
def database(sqlite_path: Path) -> Iterator[Database]:
    database = _database(sqlite_path, 5000)
    yield database
    database.dispose()


@asynccontextmanager
async def _serving(database: Database, busy_ms: int) -> AsyncIterator[SimpleNamespace]:
    """What the app's lifespan sets up, on the state ``in_transaction`` reads."""
    queue = InlineQueue(database, asyncio.get_running_loop())
    database.on_release(queue.released)
    try:
        yield SimpleNamespace(database=database, inline_queue=queue,
                              settings=SimpleNamespace(database=SimpleNamespace(sqlite_busy_timeout_ms=busy_ms)))
    finally:
        database.on_release(None)


@pytest.fixture
async def state(database: Database) -> AsyncIterator[SimpleNamespace]:
    async with _serving(database, 5000) as state:
        yield state


def _hold_queue(database: Database, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """A transaction of this process on another thread (as the audit sealer's), holding the queue."""
    holding = threading.Event()

    def hold() -> None:
        with database.queued_transaction() as session:
            session.execute(text("INSERT INTO notes VALUES ('held')"))
            holding.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(5)
    return thread, holding


def _write(body: str) -> object:
    def run(session: object) -> int:
        session.execute(text("INSERT INTO notes VALUES (:body)"), {"body": body})  # type: ignore[attr-defined]
        return threading.get_ident()
    return run


def _notes(database: Database) -> list[str]:
    with database.transaction() as session:
        return [row.body for row in session.execute(text("SELECT body FROM notes ORDER BY rowid"))]


async def test_a_request_waits_on_the_loop_and_then_runs_inline(state: SimpleNamespace, database: Database,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oauth_http, "INLINE_WAIT_S", 30)  # no look-again: only the release can wake it
    thread, _ = _hold_queue(database, 0.3)
    try:
        loop_thread = threading.get_ident()
        request = asyncio.create_task(in_transaction(state, _write("inline"), inline=True))
        await asyncio.sleep(0.1)
        assert not request.done()  # waiting: nothing ran while the queue was held
        await asyncio.to_thread(thread.join)
        released = time.monotonic()
        ran_on = await request
        assert time.monotonic() - released < 1.0  # woken by the release, not by a timeout
    finally:
        thread.join()
    assert ran_on == loop_thread  # it ran on the event loop, not on a worker thread
    assert _notes(database) == ["held", "inline"]


async def test_waiters_are_woken_one_after_another_and_all_commit(state: SimpleNamespace,
                                                                  database: Database) -> None:
    thread, _ = _hold_queue(database, 0.2)
    try:
        requests = [asyncio.create_task(in_transaction(state, _write(f"r{i}"), inline=True)) for i in range(20)]
        threads = await asyncio.gather(*requests)
    finally:
        thread.join()
    assert set(threads) == {threading.get_ident()}
    assert sorted(_notes(database)) == sorted(["held", *(f"r{i}" for i in range(20))])


async def test_without_a_serving_app_the_request_waits_on_a_worker_thread(database: Database) -> None:
    state = SimpleNamespace(database=database, inline_queue=None)
    thread, _ = _hold_queue(database, 0.2)
    try:
        ran_on = await in_transaction(state, _write("threaded"), inline=True)
    finally:
        thread.join()
    assert ran_on != threading.get_ident()
    assert _notes(database) == ["held", "threaded"]


async def test_another_process_holding_the_write_lock_sends_the_request_to_a_thread(
        state: SimpleNamespace, database: Database, sqlite_path: Path) -> None:
    other = sqlite3.connect(sqlite_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    released.start()
    try:
        ran_on = await in_transaction(state, _write("after the other process"), inline=True)
    finally:
        released.join()
        other.close()
    assert ran_on != threading.get_ident()  # no wake-up comes from another process: SQLite's busy wait on a thread
    assert _notes(database) == ["after the other process"]


async def test_a_queue_held_past_the_busy_timeout_is_database_busy(sqlite_path: Path) -> None:
    database = _database(sqlite_path, 300)
    try:
        async with _serving(database, 300) as state:
            thread, _ = _hold_queue(database, 1.0)
            try:
                started = time.monotonic()
                with pytest.raises(DatabaseError) as refused:
                    await in_transaction(state, _write("too late"), inline=True)
                assert 0.25 < time.monotonic() - started < 0.9
                assert str(refused.value) == BUSY  # the thread path's message: "database is busy (SQLite: ...)"
            finally:
                thread.join()
        assert _notes(database) == ["held"]  # nothing of the refused request ran
    finally:
        database.dispose()


async def test_wait_returns_at_once_when_the_queue_is_free(state: SimpleNamespace) -> None:
    started = time.monotonic()
    await state.inline_queue.wait(5)
    assert time.monotonic() - started < 0.1
