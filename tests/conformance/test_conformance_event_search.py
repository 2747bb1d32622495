"""``broker.storage.event_search``: the audit log's search by a filter of plain values, paged and streamed."""

from __future__ import annotations

import datetime as dt

from broker.storage import event_search
from broker.storage.db import Database
from broker.storage.enums import ClientKind
from broker.storage.event_search import EventFilter, EventPage
from broker.storage.models import AuditEvent, Client, User

NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def seed(database: Database) -> list[int]:
    """Six events, oldest first; their ids."""
    rows = [AuditEvent(event_type="token.issued", user_id="u1", client_id="c1", server_id="s1", actor="user:u1",
                       occurred_at=NOW, data={"note": "Alpha 100%"}),
            AuditEvent(event_type="authorize.denied", outcome="denied", user_id="u2", occurred_at=NOW),
            AuditEvent(event_type="authorization.decision", outcome="denied", user_id="u2", occurred_at=NOW),
            AuditEvent(event_type="token.issued", user_id="u2", client_id="c2",
                       occurred_at=NOW + dt.timedelta(hours=1)),
            AuditEvent(event_type="user.offboarded", outcome="revoked", user_id="u1",
                       occurred_at=NOW + dt.timedelta(hours=2)),
            AuditEvent(event_type="token.refreshed", user_id="u1", client_id="c1",
                       occurred_at=NOW + dt.timedelta(hours=3))]
    with database.transaction() as session:
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def types(database: Database, found: EventFilter) -> list[str]:
    with database.transaction() as session:
        return [e.event_type for e in event_search.page(session, found, None, 50).rows]


def test_each_field_of_the_filter_narrows_the_events_newest_first(database: Database) -> None:
    seed(database)
    assert types(database, EventFilter()) == ["token.refreshed", "user.offboarded", "token.issued",
                                              "authorization.decision", "authorize.denied", "token.issued"]
    assert types(database, EventFilter(user_ids=("u1",), client_ids=("c1",))) == ["token.refreshed", "token.issued"]
    assert types(database, EventFilter(server_ids=("s1", "s9"))) == ["token.issued"]
    assert types(database, EventFilter(user_ids=())) == []
    assert types(database, EventFilter(event_type="token.issued")) == ["token.issued", "token.issued"]
    assert types(database, EventFilter(outcomes=("revoked", "denied"))) == [
        "user.offboarded", "authorization.decision", "authorize.denied"]
    assert types(database, EventFilter(denials=True)) == ["authorize.denied"]
    assert types(database, EventFilter(since=NOW + dt.timedelta(hours=1), until=NOW + dt.timedelta(hours=3))) == [
        "user.offboarded", "token.issued"]
    assert types(database, EventFilter(text="alpha 100%")) == ["token.issued"]
    assert types(database, EventFilter(text="OFFBOARD")) == ["user.offboarded"]
    assert types(database, EventFilter(text="50%")) == []


def test_pages_are_keyset_on_id_and_a_window_bounds_what_a_page_reads(database: Database) -> None:
    ids = seed(database)
    with database.transaction() as session:
        first = event_search.page(session, EventFilter(), None, 4)
        assert type(first) is EventPage and first.next_before == ids[2] and len(first.rows) == 4
        rest = event_search.page(session, EventFilter(), first.next_before, 4)
        assert [e.id for e in rest.rows] == [ids[1], ids[0]] and rest.next_before is None
        windowed = event_search.page(session, EventFilter(text="token"), None, 50, window=3)
        assert [e.event_type for e in windowed.rows] == ["token.refreshed", "token.issued"]
        assert windowed.searched_from == ids[5] + 1 - 3 and windowed.next_before == windowed.searched_from
        last = event_search.page(session, EventFilter(text="token"), windowed.next_before, 50, window=3)
        assert [e.id for e in last.rows] == [ids[0]] and last.next_before is None


def test_stream_is_every_match_oldest_first(database: Database) -> None:
    ids = seed(database)
    with database.transaction() as session:
        streamed = list(event_search.stream(session, EventFilter(user_ids=("u1",))))
    assert [e.id for e in streamed] == [ids[0], ids[4], ids[5]] and all(type(e) is AuditEvent for e in streamed)


def test_event_types_are_the_distinct_types_in_order(database: Database) -> None:
    with database.transaction() as session:
        assert event_search.event_types(session) == []
    seed(database)
    with database.transaction() as session:
        assert event_search.event_types(session) == [
            "authorization.decision", "authorize.denied", "token.issued", "token.refreshed", "user.offboarded"]


def test_user_and_client_ids_are_the_exact_match_else_those_containing_the_text(database: Database) -> None:
    with database.transaction() as session:
        session.add_all([User(id="u1", email="ann@example.com", display_name="Ann"),
                         User(id="u2", email="annette@example.com", display_name="Bob"),
                         User(id="u3", email="carl@example.com", display_name="Joanna"),
                         Client(id="c1", name="Inspector", kind=ClientKind.DCR),
                         Client(id="c2", name="Desktop inspector", kind=ClientKind.DCR)])
    with database.transaction() as session:
        assert event_search.user_ids(session, "ann@example.com", 10) == ["u1"]
        assert event_search.user_ids(session, "u3", 10) == ["u3"]
        assert sorted(event_search.user_ids(session, "ANN", 10)) == ["u1", "u2", "u3"]
        assert len(event_search.user_ids(session, "ann", 2)) == 2
        assert event_search.user_ids(session, "zed", 10) == []
        assert event_search.client_ids(session, "c2", 10) == ["c2"]
        assert sorted(event_search.client_ids(session, "INSPECTOR", 10)) == ["c1", "c2"]
        assert event_search.client_ids(session, "nothing", 10) == []
