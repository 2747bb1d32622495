"""Audit observers see an event once its transaction commits, and never one that rolled back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker import audit
from broker.storage.db import Database


@pytest.fixture
def seen() -> Iterator[list[audit.ObservedEvent]]:
    events: list[audit.ObservedEvent] = []
    stop = audit.observe(events.append)
    yield events
    stop()


def test_a_committed_event_reaches_the_observer_after_the_commit(migrated: Database, seen: list) -> None:
    with migrated.transaction() as session:
        audit.record(session, "token.issued", actor="c", client_id="c", server_id="demo",
                     data={"grant": "client_credentials", "jti": "j1"})
        assert seen == []  # not before the commit
    [event] = seen
    assert (event.event_type, event.outcome, event.client_id, event.server_id) == ("token.issued", "success", "c",
                                                                                   "demo")
    assert event.data["grant"] == "client_credentials"


def test_a_rolled_back_event_is_never_observed(migrated: Database, seen: list) -> None:
    with pytest.raises(RuntimeError), migrated.transaction() as session:
        audit.record(session, "user.offboarded", actor="admin", outcome="revoked")
        raise RuntimeError("the change failed")
    with migrated.transaction() as session:
        audit.record(session, "user.restored", actor="admin")
    assert [e.event_type for e in seen] == ["user.restored"]


def test_a_failing_observer_fails_nothing(migrated: Database, seen: list) -> None:
    def broken(event: audit.ObservedEvent) -> None:
        raise ValueError("bug in a metrics listener")

    stop = audit.observe(broken)
    try:
        with migrated.transaction() as session:
            audit.record(session, "token.revoked", actor="c", outcome="revoked")
    finally:
        stop()
    assert [e.event_type for e in seen] == ["token.revoked"]


def test_a_stopped_observer_hears_nothing_more(migrated: Database) -> None:
    events: list[audit.ObservedEvent] = []
    stop = audit.observe(events.append)
    stop()
    with migrated.transaction() as session:
        audit.record(session, "token.issued", actor="c")
    assert events == []
