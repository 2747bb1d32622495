"""``broker.storage.clients``: a client is a ``ClientRow`` from every read, on both lanes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from broker.storage import clients
from broker.storage.clients import ClientRow
from broker.storage.db import Database
from broker.storage.enums import ClientKind, ClientStatus

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)


def client(client_id: str, minutes: int, status: ClientStatus = ClientStatus.ACTIVE, **columns: Any) -> ClientRow:
    created = NOW + dt.timedelta(minutes=minutes)
    return ClientRow(id=client_id, name=client_id, kind=ClientKind.DCR, status=status, secret_hash=None,
                     token_endpoint_auth_method="none", extra_auth_methods=[], redirect_uris=[], grant_types=[],
                     jwks=None, jwks_uri=None, trusted=False, scopes=[], may_introspect=False, resource_servers=[],
                     dpop_bound_access_tokens=False, registered_from=None, metadata_={}, created_at=created,
                     updated_at=created)._replace(**columns)


def test_newest_first_pages_by_registration_time_then_id(database: Database) -> None:
    with database.transaction() as session:
        for row in (client("a", 1), client("b", 3), client("c", 3), client("d", 2, ClientStatus.PENDING)):
            clients.add(session, row)
    with database.transaction() as session:
        assert [c.id for c in clients.newest_first(session, offset=0, limit=10)] == ["b", "c", "d", "a"]
        assert [c.id for c in clients.newest_first(session, offset=1, limit=2)] == ["c", "d"]
        assert [c.id for c in clients.newest_first(session, offset=4, limit=2)] == []
        assert [c.id for c in clients.newest_first(session, offset=0, limit=10, status=ClientStatus.PENDING)] == ["d"]
        assert all(type(c) is ClientRow for c in clients.newest_first(session, offset=0, limit=10))


def cimd_values(client_id: str) -> dict[str, object]:
    return {"id": client_id, "name": "Doc client", "kind": ClientKind.CIMD, "status": ClientStatus.ACTIVE,
            "secret_hash": None, "token_endpoint_auth_method": "none", "extra_auth_methods": [],
            "redirect_uris": ["https://app.example/cb"], "grant_types": ["authorization_code"], "jwks": None,
            "jwks_uri": None, "trusted": False, "scopes": [], "may_introspect": False, "resource_servers": [],
            "dpop_bound_access_tokens": False, "registered_from": None,
            "metadata": {"client_uri": "https://app.example"}, "created_at": NOW, "updated_at": NOW}


async def test_an_added_client_reads_back_as_it_was_added_on_both_lanes(database: Database) -> None:
    added = client("c1", 0, redirect_uris=["https://a/cb"], jwks={"keys": []}, trusted=True,
                   metadata_={"logo_uri": "https://a/l.png"}, extra_auth_methods=["client_secret_post"],
                   dpop_bound_access_tokens=True)
    with database.transaction() as session:
        clients.add(session, added)
    with database.transaction() as session:
        found = clients.get(session, "c1")
        assert type(found) is ClientRow and found == added
        assert clients.get(session, "c2") is None
    async with database.hot.read() as tx:
        assert await clients.record_hot(tx, "c1") == added
        assert await clients.record_hot(tx, "c2") is None


async def test_insert_if_absent_stores_a_client_once_on_both_lanes(database: Database) -> None:
    with database.transaction() as session:
        assert clients.insert_if_absent(session, cimd_values("https://app.example/c")) is True
        assert clients.insert_if_absent(session, {**cimd_values("https://app.example/c"), "name": "Other"}) is False
    async with database.hot.write() as tx:
        assert await clients.insert_if_absent_hot(tx, cimd_values("https://app.example/c")) is False
        assert await clients.insert_if_absent_hot(tx, cimd_values("https://other.example/c")) is True
    with database.transaction() as session:
        stored = clients.get(session, "https://app.example/c")
        assert stored is not None and stored.name == "Doc client"
        assert stored.metadata_ == {"client_uri": "https://app.example"}
        assert [c.id for c in clients.list_all(session)] == ["https://app.example/c", "https://other.example/c"]


async def test_update_hot_sets_the_columns_given_and_updated_at(database: Database) -> None:
    with database.transaction() as session:
        clients.insert_if_absent(session, cimd_values("https://app.example/c"))
    later = NOW + dt.timedelta(hours=1)
    async with database.hot.write() as tx:
        await clients.update_hot(tx, "https://app.example/c", {"name": "Renamed", "metadata_": {"a": 1},
                                                               "dpop_bound_access_tokens": True}, later)
    with database.transaction() as session:
        stored = clients.get(session, "https://app.example/c")
        assert stored is not None
        assert (stored.name, stored.metadata_, stored.dpop_bound_access_tokens) == ("Renamed", {"a": 1}, True)
        assert (stored.updated_at, stored.created_at) == (later, NOW)


def test_update_sets_the_columns_given_and_updated_at_and_nothing_else(database: Database) -> None:
    with database.transaction() as session:
        clients.add(session, client("a", 0, scopes=["x"]))
        clients.add(session, client("b", 0))
    later = NOW + dt.timedelta(hours=1)
    with database.transaction() as session:
        clients.update(session, "a", {"status": ClientStatus.DISABLED, "resource_servers": ["s1"]}, later)
    with database.transaction() as session:
        assert clients.get(session, "a") == client("a", 0, scopes=["x"], status=ClientStatus.DISABLED,
                                                   resource_servers=["s1"], updated_at=later)
        assert clients.get(session, "b") == client("b", 0)


def test_count_registered_from_counts_an_address_since_a_time(database: Database) -> None:
    with database.transaction() as session:
        for minutes, address in ((0, "10.0.0.1"), (5, "10.0.0.1"), (6, "10.0.0.2"), (-5, "10.0.0.1")):
            clients.add(session, client(f"c{minutes}{address}", minutes, registered_from=address))
    with database.transaction() as session:
        assert clients.count_registered_from(session, "10.0.0.1", NOW) == 2
        assert clients.count_registered_from(session, "10.0.0.1", NOW + dt.timedelta(minutes=1)) == 1
        assert clients.count_registered_from(session, "10.0.0.9", NOW) == 0


def test_names_are_those_of_the_registered_clients_asked_for(database: Database) -> None:
    with database.transaction() as session:
        clients.add(session, client("a", 1))
        clients.add(session, client("b", 2))
    with database.transaction() as session:
        assert clients.names(session, {"a", "nope"}) == {"a": "a"}
        assert clients.names(session, []) == {}
