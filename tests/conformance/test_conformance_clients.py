"""``broker.storage.clients``: the newest-first page of clients."""

from __future__ import annotations

import datetime as dt

from broker.storage import clients
from broker.storage.db import Database
from broker.storage.enums import ClientKind, ClientStatus
from broker.storage.models import Client

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)


def client(client_id: str, minutes: int, status: ClientStatus = ClientStatus.ACTIVE) -> Client:
    return Client(id=client_id, name=client_id, kind=ClientKind.DCR, status=status,
                  created_at=NOW + dt.timedelta(minutes=minutes))


def test_newest_first_pages_by_registration_time_then_id(database: Database) -> None:
    with database.transaction() as session:
        for row in (client("a", 1), client("b", 3), client("c", 3), client("d", 2, ClientStatus.PENDING)):
            clients.add(session, row)
    with database.transaction() as session:
        assert [c.id for c in clients.newest_first(session, offset=0, limit=10)] == ["b", "c", "d", "a"]
        assert [c.id for c in clients.newest_first(session, offset=1, limit=2)] == ["c", "d"]
        assert [c.id for c in clients.newest_first(session, offset=4, limit=2)] == []
        assert [c.id for c in clients.newest_first(session, offset=0, limit=10, status=ClientStatus.PENDING)] == ["d"]
        assert all(type(c) is Client for c in clients.newest_first(session, offset=0, limit=10))
