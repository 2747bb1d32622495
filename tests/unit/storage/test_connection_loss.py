"""Losing the database connection: a pooled connection the server closed is replaced before use (no
`pool_pre_ping` round trip), and a request that meets an unreachable database is a 503, not a 500."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from sqlalchemy import text

from broker.storage.db import Database


@pytest.fixture
def pg_database(postgres_server) -> Iterator[Database]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    database = Database(postgres_server.create_database(name))
    yield database
    database.dispose()
    postgres_server.drop_database(name)


def backend_pid(database: Database) -> int:
    with database.transaction() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(pg_database, postgres_server) -> None:
    first = backend_pid(pg_database)  # its connection goes back to the pool, idle
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [first])  # as a restart or an idle timeout would
    time.sleep(0.2)  # the backend's FATAL message and the socket's close reach this side
    assert backend_pid(pg_database) != first  # no OperationalError: a fresh connection took its place
    assert pg_database.engine.pool.checkedout() == 0


async def test_a_request_meeting_an_unreachable_database_is_a_503(client: httpx.AsyncClient, state) -> None:
    state.database = Database("postgresql://nobody@127.0.0.1:1/none")  # refused at once, as a stopped server is
    response = await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": "x",
                                                 "client_id": "c"})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "1" and response.headers["cache-control"] == "no-store"
