"""SQLite's write lock on the token path: ``Database.transaction_now`` takes it before any work or
refuses at once (``WriteLockTaken``, nothing ran), so the event loop that runs token requests inline
never sleeps in SQLite's busy handler; the web layer then queues the request on a worker thread.
The server checkpoints the WAL in the background instead of in a request's COMMIT."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import pytest
from sqlalchemy import text

from broker.oauth.params import Params
from broker.storage.db import Database, EngineOptions, WriteLockTaken
from broker.web.token import _no_metadata_fetch
from tests.support.oauth_flow import DEMO_RESOURCE, allow_clients, register_client

BUSY_MS = 5000


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.fixture
def database(sqlite_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{sqlite_path}", EngineOptions(sqlite_busy_timeout_ms=BUSY_MS))
    with database.transaction() as session:
        session.execute(text("CREATE TABLE notes (body TEXT)"))
    yield database
    database.dispose()


@pytest.fixture
def writer(sqlite_path: Path, database: Database) -> Iterator[sqlite3.Connection]:
    """Another connection (as another worker or the CLI would be) that holds the write lock."""
    other = sqlite3.connect(sqlite_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def notes(database: Database) -> list[str]:
    with database.transaction() as session:
        return [row.body for row in session.execute(text("SELECT body FROM notes"))]


def busy_timeout(database: Database) -> int:
    with database.transaction() as session:
        return int(session.execute(text("PRAGMA busy_timeout")).scalar_one())


def test_commits_like_any_transaction_and_leaves_the_pools_busy_timeout(database: Database) -> None:
    with database.transaction_now() as session:
        session.execute(text("INSERT INTO notes VALUES ('kept')"))
    assert notes(database) == ["kept"]
    assert busy_timeout(database) == BUSY_MS  # its own connection refuses at once; the pool's still wait


def test_an_error_inside_rolls_everything_back_and_frees_the_lock(database: Database, sqlite_path: Path) -> None:
    with pytest.raises(RuntimeError), database.transaction_now() as session:
        session.execute(text("INSERT INTO notes VALUES ('lost')"))
        raise RuntimeError("the grant failed")
    assert notes(database) == []
    other = sqlite3.connect(sqlite_path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # nothing holds the write lock
        other.execute("ROLLBACK")
    finally:
        other.close()
    with database.transaction_now() as session:
        session.execute(text("INSERT INTO notes VALUES ('next')"))
    assert notes(database) == ["next"]


def test_a_transaction_that_ran_nothing_still_ends(database: Database, sqlite_path: Path) -> None:
    with database.transaction_now():
        pass
    with database.transaction_now() as session:  # BEGIN IMMEDIATE again: the first one was committed
        session.execute(text("INSERT INTO notes VALUES ('after')"))
    assert notes(database) == ["after"]


def test_an_invalidated_connection_is_replaced(database: Database) -> None:
    with pytest.raises(RuntimeError), database.transaction_now() as session:
        session.connection().invalidate()  # as a driver error that means "disconnected" does
        raise RuntimeError("disk I/O error")
    with database.transaction_now() as session:
        session.execute(text("INSERT INTO notes VALUES ('reconnected')"))
    assert notes(database) == ["reconnected"]


def test_refuses_at_once_while_another_connection_writes(database: Database, writer: sqlite3.Connection) -> None:
    started = time.perf_counter()
    with pytest.raises(WriteLockTaken), database.transaction_now():
        pytest.fail("the body must not run without the write lock")
    assert time.perf_counter() - started < 0.5  # not the 5 s busy timeout
    writer.execute("COMMIT")
    with database.queued_transaction() as session:  # the process queue was released
        session.execute(text("INSERT INTO notes VALUES ('after')"))
    assert notes(database) == ["after"] and busy_timeout(database) == BUSY_MS


def test_refuses_at_once_while_this_process_queues_a_transaction(database: Database) -> None:
    holding, release = threading.Event(), threading.Event()

    def queued() -> None:
        with database.queued_transaction() as session:
            session.execute(text("INSERT INTO notes VALUES ('queued')"))
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=queued)
    thread.start()
    try:
        assert holding.wait(5)
        with pytest.raises(WriteLockTaken), database.transaction_now():
            pytest.fail("the body must not run while the queue is held")
    finally:
        release.set()
        thread.join()
    assert notes(database) == ["queued"]


def test_postgresql_always_takes_the_thread_path() -> None:
    database = Database("postgresql://nobody@127.0.0.1:1/none")  # refused before any connection is made
    with pytest.raises(WriteLockTaken), database.transaction_now():
        pytest.fail("PostgreSQL transactions never run on the event loop")
    database.dispose()


def test_the_server_checkpoints_in_the_background(sqlite_path: Path) -> None:
    database = Database(f"sqlite:///{sqlite_path}", EngineOptions(sqlite_background_checkpoint=True))
    try:
        with database.transaction() as session:
            assert session.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == 0  # no COMMIT checkpoints
            session.execute(text("CREATE TABLE notes (body TEXT)"))
        for n in range(50):
            with database.transaction() as session:
                session.execute(text("INSERT INTO notes VALUES (:n)"), {"n": str(n)})
        wal = sqlite_path.with_name(sqlite_path.name + "-wal")
        assert wal.stat().st_size > 0
        database.checkpoint()
        with database.transaction() as session:  # every frame in the log is in the database file now
            busy, logged, copied = session.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
        assert busy == 0 and logged == copied
    finally:
        database.dispose()


def test_requests_naming_a_metadata_document_client_take_the_thread_path() -> None:
    class Request:
        def __init__(self, authorization: str = "") -> None:
            self.headers = {"authorization": authorization} if authorization else {}

    def basic(client_id: str) -> str:  # RFC 6749 §2.3.1: the client id form-urlencoded
        return "Basic " + base64.b64encode(f"{quote_plus(client_id)}:secret".encode()).decode()

    assert _no_metadata_fetch(Request(basic("app")), Params([("grant_type", "refresh_token")]))
    assert _no_metadata_fetch(Request(), Params([("client_id", "app")]))
    assert not _no_metadata_fetch(Request(), Params([("client_id", "https://app.example.com/client.json")]))
    assert not _no_metadata_fetch(Request(basic("https://app.example.com/c")), Params([]))
    assert not _no_metadata_fetch(Request(), Params([("client_assertion", "eyJ...")]))  # the client is inside
    # authlib decodes Basic credentials leniently (junk characters skipped): what we cannot read strictly,
    # we do not guess about
    junk = "Basic " + base64.b64encode(quote_plus("https://app.example.com/c").encode() + b":s").decode() + "!"
    assert not _no_metadata_fetch(Request(junk), Params([]))
    assert not _no_metadata_fetch(Request("Bearer abc"), Params([]))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_token_request_meeting_a_held_write_lock_queues_and_the_loop_keeps_serving(
        client: httpx.AsyncClient, state, database_url: str) -> None:
    robot = register_client(state, auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("tools:read",))
    allow_clients(state, robot.row.id)
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.6, lambda: other.execute("COMMIT"))
    released.start()
    try:
        token = asyncio.create_task(client.post("/token", data={"grant_type": "client_credentials",
                                                                "resource": DEMO_RESOURCE},
                                                auth=(robot.row.id, robot.secret)))
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        health = await client.get("/healthz")
        assert health.status_code == 200 and time.perf_counter() - started < 0.3  # the loop was not blocked
        assert not token.done()  # waiting on a worker thread for the lock
        response = await token
    finally:
        released.join()
        other.close()
    assert response.status_code == 200 and response.json()["scope"] == "tools:read"
