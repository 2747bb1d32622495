"""``Prepared`` statements read and write exactly what ``Session.execute`` would, on both stores, inside the
session's transaction, and fail the way SQLAlchemy fails."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, exc, insert, select, text, update

from broker.storage.db import Database
from broker.storage.models import AuditEvent, Client, Group, User
from broker.storage.prepared import Prepared

CLIENTS = Client.__table__
USERS = User.__table__
GROUPS = Group.__table__
EVENTS = AuditEvent.__table__
BY_ID = select(*CLIENTS.c).where(CLIENTS.c.id == bindparam("client_id"))
NOW = dt.datetime(2026, 11, 26, 12, 30, 15, 123456, tzinfo=dt.UTC)


def add_client(database: Database, client_id: str = "c1", **values: object) -> None:
    with database.transaction() as session:
        session.add(Client(id=client_id, name="Näme", kind="public", status="active", trusted=True,
                           token_endpoint_auth_method="none", redirect_uris=["http://127.0.0.1/cb"],
                           grant_types=["authorization_code"], metadata_={"nested": [1, "é", None]},
                           may_introspect=False, **values))


def test_a_select_reads_what_the_session_reads(migrated: Database) -> None:
    add_client(migrated, jwks={"keys": []})
    prepared = Prepared(BY_ID)
    with migrated.transaction() as session:
        expected = session.execute(BY_ID, {"client_id": "c1"}).first()
        row = prepared.first(session, {"client_id": "c1"})
        assert expected is not None and row is not None
        assert tuple(row) == tuple(expected)
        assert row.redirect_uris == ["http://127.0.0.1/cb"] and row.trusted is True and row.may_introspect is False
        assert row.created_at.tzinfo is dt.UTC
        assert prepared.first(session, {"client_id": "nobody"}) is None
        assert prepared.rows(session, {"client_id": "c1"}) == [row]
        assert prepared.scalar(session, {"client_id": "c1"}) == "c1"


def test_writes_store_what_the_session_stores(migrated: Database) -> None:
    columns = ["occurred_at", "event_type", "actor", "user_id", "client_id", "server_id", "outcome", "data"]
    prepared = Prepared(insert(EVENTS), columns=columns)
    values = {"occurred_at": NOW, "event_type": "t", "actor": "a", "user_id": None, "client_id": None,
              "server_id": None, "outcome": "success", "data": {"k": ["é", 1, True]}}
    with migrated.transaction() as session:
        assert prepared.rowcount(session, values) == 1
        session.execute(insert(EVENTS), values)
    with migrated.transaction() as session:
        raw = session.execute(text("SELECT occurred_at, data FROM audit_events ORDER BY id")).all()
        read = session.execute(select(EVENTS.c.occurred_at, EVENTS.c.data).order_by(EVENTS.c.id)).all()
    assert raw[0] == raw[1]  # the same bytes in the database
    assert read[0] == (NOW, {"k": ["é", 1, True]})


def test_update_returning_and_rowcount(migrated: Database) -> None:
    with migrated.transaction() as session:
        session.add(Group(id="g1", source="local", name="ops", created_at=NOW))
    rename = Prepared(update(GROUPS).where(GROUPS.c.id == bindparam("b_id")).values(name=bindparam("b_name"))
                      .returning(GROUPS.c.id, GROUPS.c.name.label("label"), GROUPS.c.external_id, GROUPS.c.created_at))
    tag = Prepared(update(GROUPS).where(GROUPS.c.id == bindparam("b_id")).values(external_id=bindparam("b_tag")))
    with migrated.transaction() as session:
        row = rename.first(session, {"b_id": "g1", "b_name": "sre"})
        assert row is not None and tuple(row) == ("g1", "sre", None, NOW) and row.label == "sre"
        assert rename.first(session, {"b_id": "g2", "b_name": "dev"}) is None
        assert tag.rowcount(session, {"b_id": "g1", "b_tag": "x-1"}) == 1
        assert tag.rowcount(session, {"b_id": "g2", "b_tag": "x-2"}) == 0
    with migrated.transaction() as session:
        group = session.get(Group, "g1")
        assert group is not None and (group.name, group.external_id) == ("sre", "x-1")


def test_it_runs_in_the_sessions_transaction(migrated: Database) -> None:
    """Pending ORM changes are flushed first (as Session.execute autoflushes), and a rollback undoes it all."""
    prepared = Prepared(BY_ID)
    with pytest.raises(RuntimeError), migrated.transaction() as session:
        session.add(Client(id="c2", name="n", kind="public", status="active", token_endpoint_auth_method="none",
                           redirect_uris=[], grant_types=[], trusted=False, may_introspect=False))
        assert prepared.first(session, {"client_id": "c2"}) is not None  # flushed, visible, not committed
        raise RuntimeError("roll back")
    with migrated.transaction() as session:
        assert prepared.first(session, {"client_id": "c2"}) is None


def test_one_session_across_transactions_uses_each_transactions_connection(migrated: Database) -> None:
    prepared = Prepared(BY_ID)
    with migrated.sessions() as session:
        with session.begin():
            assert prepared.first(session, {"client_id": "c3"}) is None
        add_client(migrated, "c3")
        with session.begin():
            assert prepared.first(session, {"client_id": "c3"}) is not None


def test_driver_errors_come_out_as_sqlalchemys(migrated: Database) -> None:
    add_group = Prepared(insert(GROUPS), columns=["id", "source", "name", "external_id", "created_at"])
    values = {"id": "g4", "source": "local", "name": "ops", "external_id": "secret-looking-value", "created_at": NOW}
    with migrated.transaction() as session:
        add_group.rowcount(session, values)
    with pytest.raises(exc.IntegrityError) as raised, migrated.transaction() as session:
        add_group.rowcount(session, values)
    assert "secret-looking-value" not in str(raised.value)  # parameters are never put in the message
    with migrated.transaction() as session:
        assert session.get(Group, "g4") is not None  # and the database is usable again


def test_statements_it_cannot_run_faithfully_are_refused() -> None:
    with pytest.raises(TypeError, match="columns"):
        Prepared(insert(EVENTS))
    needs_default = Prepared(insert(USERS), columns=["email"])  # users.id has a Python-side default
    needs_onupdate = Prepared(update(USERS).values(email=bindparam("b_email")))  # and updated_at an onupdate
    database = Database("sqlite://")
    try:
        for statement in (needs_default, needs_onupdate):
            with pytest.raises(TypeError, match="defaults"), database.transaction() as session:
                statement.rowcount(session, {"email": "a@example.com", "b_email": "b@example.com"})
    finally:
        database.dispose()


def test_constants_in_the_statement_are_sent(migrated: Database) -> None:
    add_client(migrated, "c5")
    newest = Prepared(select(CLIENTS.c.id).where(CLIENTS.c.status == "active").order_by(CLIENTS.c.id.desc())
                      .limit(1))
    with migrated.transaction() as session:
        assert newest.scalars(session, {}) == ["c5"]


async def test_a_memo_statement_returns_a_changed_row_as_changed_on_both_lanes(migrated: Database) -> None:
    add_client(migrated)
    prepared = Prepared(BY_ID, memo=True)
    async with migrated.hot.read() as tx:
        first = await tx.first(prepared, {"client_id": "c1"})
        again = await tx.first(prepared, {"client_id": "c1"})
    assert again == first and again.status == "active"
    with migrated.transaction() as session:
        session.execute(update(CLIENTS).where(CLIENTS.c.id == "c1").values(status="disabled",
                                                                          redirect_uris=["http://127.0.0.1/other"]))
    async with migrated.hot.read() as tx:
        changed = await tx.first(prepared, {"client_id": "c1"})
    with migrated.transaction() as session:
        cold = prepared.first(session, {"client_id": "c1"})
    assert changed.status == cold.status == "disabled"
    assert changed.redirect_uris == cold.redirect_uris == ["http://127.0.0.1/other"]
