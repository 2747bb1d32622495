"""``broker.storage.audit_events``: the export's count and its stream of events, oldest first."""

from __future__ import annotations

import datetime as dt

import pytest

from broker.storage import audit_events
from broker.storage.db import Database
from broker.storage.models import AuditEvent

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)


def test_in_order_streams_every_event_by_id_and_count_agrees(database: Database,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_events, "BATCH", 2)  # more events than one batch
    with database.transaction() as session:
        session.add_all([AuditEvent(event_type=f"e{i}", occurred_at=NOW + dt.timedelta(minutes=5 - i))
                         for i in range(5)])
    with database.transaction() as session:
        events = list(audit_events.in_order(session))
        assert [e.event_type for e in events] == ["e0", "e1", "e2", "e3", "e4"]
        assert all(type(e) is AuditEvent for e in events)
        assert audit_events.count(session) == 5


def test_since_keeps_the_events_at_or_after_it(database: Database) -> None:
    with database.transaction() as session:
        session.add_all([AuditEvent(event_type=f"e{i}", occurred_at=NOW + dt.timedelta(minutes=i)) for i in range(4)])
    since = NOW + dt.timedelta(minutes=2)
    with database.transaction() as session:
        assert [e.event_type for e in audit_events.in_order(session, since)] == ["e2", "e3"]
        assert audit_events.count(session, since) == 2
        assert audit_events.count(session, NOW + dt.timedelta(days=1)) == 0


def test_of_user_is_the_users_latest_events_newest_first(database: Database) -> None:
    with database.transaction() as session:
        session.add_all([AuditEvent(event_type=kind, user_id=user, occurred_at=NOW) for kind, user in (
            ("a", "u1"), ("user.offboarded", "u1"), ("b", "u2"), ("c", "u1"), ("user.offboarded", "u1"))])
    with database.transaction() as session:
        assert [e.event_type for e in audit_events.of_user(session, "u1", 10)] == [
            "user.offboarded", "c", "user.offboarded", "a"]
        assert [e.event_type for e in audit_events.of_user(session, "u1", 2)] == ["user.offboarded", "c"]
        latest = audit_events.of_user(session, "u1", 1, "user.offboarded")
        assert len(latest) == 1 and latest[0].id == max(e.id for e in audit_events.of_user(session, "u1", 10))
        assert audit_events.of_user(session, "u3", 10) == []
