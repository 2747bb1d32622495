"""``broker.storage.audit_chain`` and ``audit_events.add``: events added on both lanes, the unsealed ones read
in id order, links written, the head created once, taken and moved, the sealed ones read in chain order."""

from __future__ import annotations

import datetime as dt

from broker.storage import audit_chain, audit_events
from broker.storage.audit_chain import ChainedEvent, EventRow, Head, Link
from broker.storage.db import Database

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)


def values(event_type: str, minutes: int = 0) -> dict[str, object]:
    return {"occurred_at": NOW + dt.timedelta(minutes=minutes), "event_type": event_type, "actor": "ann",
            "user_id": "u1", "client_id": None, "server_id": "s1", "outcome": "success", "data": {"n": minutes}}


async def test_events_added_on_both_lanes_read_back_unsealed_in_id_order(database: Database) -> None:
    with database.transaction() as session:
        audit_events.add(session, values("first", 5))
    async with database.hot.write() as tx:
        await audit_events.add_hot(tx, values("second", 1))
    with database.transaction() as session:
        rows = audit_chain.unsealed(session, 10)
        assert [(r.event_type, r.data) for r in rows] == [("first", {"n": 5}), ("second", {"n": 1})]
        assert all(type(r) is EventRow for r in rows)
        assert rows[0]._replace(id=0) == EventRow(0, NOW + dt.timedelta(minutes=5), "first", "ann", "u1", None,
                                                  "s1", "success", {"n": 5})
        assert [r.event_type for r in audit_chain.unsealed(session, 1)] == ["first"]
        assert (audit_chain.unsealed_count(session), audit_chain.sealed_count(session)) == (2, 0)


def test_the_head_is_created_once_and_taken_as_it_is(database: Database) -> None:
    with database.transaction() as session:
        assert audit_chain.take_head(session) is None and audit_chain.head(session) is None
        audit_chain.add_head_if_absent(session, "mac0", NOW)
        audit_chain.add_head_if_absent(session, "other", NOW)  # a second first sealer changes nothing
    with database.transaction() as session:
        assert audit_chain.take_head(session) == (0, "")
        assert audit_chain.head(session) == Head(0, "", "mac0")


def test_links_place_events_in_the_chain_and_move_the_head(database: Database) -> None:
    with database.transaction() as session:
        for i in range(3):
            audit_events.add(session, values(f"e{i}", i))
        audit_chain.add_head_if_absent(session, "mac0", NOW)
    with database.transaction() as session:
        first, second, _third = audit_chain.unsealed(session, 10)
        audit_chain.link(session, [Link(first.id, 1, "", "h1"), Link(second.id, 2, "h1", "h2")],
                         Head(2, "h2", "mac2"), NOW)
    with database.transaction() as session:
        chained = list(audit_chain.chained(session, batch=1))
        assert chained == [ChainedEvent(first, 1, "", "h1"), ChainedEvent(second, 2, "h1", "h2")]
        assert all(type(c) is ChainedEvent and type(c.event) is EventRow for c in chained)
        assert [r.event_type for r in audit_chain.unsealed(session, 10)] == ["e2"]
        assert (audit_chain.unsealed_count(session), audit_chain.sealed_count(session)) == (1, 2)
        assert audit_chain.take_head(session) == (2, "h2") and audit_chain.head(session) == Head(2, "h2", "mac2")
