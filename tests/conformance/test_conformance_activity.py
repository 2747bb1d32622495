"""``broker.storage.activity``: the dashboard's counts, its events per hour and its latest events of a kind."""

from __future__ import annotations

import datetime as dt

from broker.storage import activity
from broker.storage.db import Database
from broker.storage.enums import ClientKind
from broker.storage.models import AuditEvent, Client, User

START = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def event(kind: str, hours: float, outcome: str = "success") -> AuditEvent:
    return AuditEvent(event_type=kind, outcome=outcome, occurred_at=START + dt.timedelta(hours=hours))


def test_counts_are_users_those_signed_in_since_clients_and_issued_events(database: Database) -> None:
    with database.transaction() as session:
        session.add_all([User(id="u1", last_login_at=START + dt.timedelta(hours=2)),
                         User(id="u2", last_login_at=START - dt.timedelta(hours=1)), User(id="u3"),
                         Client(id="c1", name="One", kind=ClientKind.DCR),
                         event("token.issued", 1), event("token.refreshed", 3), event("token.issued", -1),
                         event("user.offboarded", 2)])
    with database.transaction() as session:
        counts = activity.counts(session, START, ("token.issued", "token.refreshed"), START)
    assert counts == activity.Counts(users=3, active_today=1, clients=1, issued=2)


def test_per_hour_counts_the_types_in_each_of_24_hours(database: Database) -> None:
    with database.transaction() as session:
        session.add_all([event("token.issued", 0), event("token.issued", 0.99), event("token.refreshed", 5.5),
                         event("token.issued", 23.9), event("token.issued", 24), event("token.issued", -0.1),
                         event("user.offboarded", 1)])
    with database.transaction() as session:
        hours = activity.per_hour(session, ("token.issued", "token.refreshed"), START)
    assert len(hours) == 24 and hours[0] == 2 and hours[5] == 1 and hours[23] == 1 and sum(hours) == 4


def test_a_denial_counts_once_per_hour_and_in_the_latest_denials(database: Database) -> None:
    with database.transaction() as session:
        session.add_all([event("token.issued", -1), event("authorize.denied", -0.5, "denied"),
                         event("authorization.decision", 2, "denied"), event("authorize.denied", 2, "denied"),
                         event("token.denied", 7, "denied"), event("token.issued", 7)])
    with database.transaction() as session:
        hours = activity.denials_per_hour(session, START)
        denials = activity.latest_denials(session, 8)
        assert [e.event_type for e in activity.latest_denials(session, 1)] == ["token.denied"]
    assert len(hours) == 24 and hours[2] == 1 and hours[7] == 1 and sum(hours) == 2
    assert [e.event_type for e in denials] == ["token.denied", "authorize.denied", "authorize.denied"]
    assert all(type(e) is AuditEvent for e in denials)


def test_latest_is_the_newest_events_of_the_types(database: Database) -> None:
    with database.transaction() as session:
        session.add_all([event("user.offboarded", 0), event("token.issued", 1), event("user.sessions_revoked", 2),
                         event("user.offboarded", 3)])
    with database.transaction() as session:
        kinds = ("user.offboarded", "user.sessions_revoked")
        assert [e.event_type for e in activity.latest(session, kinds, 8)] == [
            "user.offboarded", "user.sessions_revoked", "user.offboarded"]
        assert [e.occurred_at for e in activity.latest(session, kinds, 1)] == [START + dt.timedelta(hours=3)]
        assert activity.latest(session, ("none",), 8) == []
