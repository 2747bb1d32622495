"""SQLite's write lock: a token request that finds it held (by another process, or a worker thread of this one)
waits for it with ``await``, so the event loop keeps serving meanwhile (``broker.storage.hot``), and the server
checkpoints the WAL in the background instead of in a request's COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from broker.storage.db import Database, EngineOptions
from tests.support.oauth_flow import DEMO_RESOURCE, allow_clients, register_client


def test_the_server_checkpoints_in_the_background(tmp_path: Path) -> None:
    sqlite_path = tmp_path / "broker.db"
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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_token_request_meeting_a_held_write_lock_waits_and_the_loop_keeps_serving(
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
        assert not token.done()  # waiting, on the loop, for the lock
        response = await token
    finally:
        released.join()
        other.close()
    assert response.status_code == 200 and response.json()["scope"] == "tools:read"
