"""The audit chain's rows: the events to seal, their links, and the head row (``broker.audit.chain`` seals and
verifies; what a link is and how it is computed are its business, not this module's).

Core statements, not ORM objects: a busy worker seals hundreds of events a second, and while it does it holds
the write lock (SQLite) and the GIL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from broker.storage.models import AuditChainHead, AuditEvent
from broker.storage.statements import insert_unless_present

HEAD_ID = 1  # the chain has one head row


class EventRow(NamedTuple):
    """An event's content: every column but the chain's own (what a link hashes)."""

    id: int
    occurred_at: dt.datetime
    event_type: str
    actor: str
    user_id: str | None
    client_id: str | None
    server_id: str | None
    outcome: str
    data: dict[str, Any]


class ChainedEvent(NamedTuple):
    """A sealed event: its content and its place in the chain."""

    event: EventRow
    chain_seq: int
    prev_hash: str | None
    hash: str | None


class Head(NamedTuple):
    """The chain head: the last sealed position, its link, and the MAC of both."""

    seq: int
    hash: str
    mac: str


class Link(NamedTuple):
    event_id: int
    seq: int
    prev_hash: str
    hash: str


_EVENTS = AuditEvent.__table__
_HEAD = AuditChainHead.__table__
_UNSEALED = (select(*(_EVENTS.c[name] for name in EventRow._fields))
             .where(_EVENTS.c.chain_seq.is_(None)).order_by(_EVENTS.c.id).limit(bindparam("limit")))
_CHAINED = (select(*(_EVENTS.c[name] for name in (*EventRow._fields, *ChainedEvent._fields[1:])))
            .where(_EVENTS.c.chain_seq.is_not(None)).order_by(_EVENTS.c.chain_seq))
_LINK = (update(_EVENTS).where(_EVENTS.c.id == bindparam("b_id"))
         .values(chain_seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash")))
# Takes the head row's lock (PostgreSQL) or the write lock (SQLite) and reads the head in one statement,
# so two sealers never read the same head; writers of events are never involved. Under PostgreSQL's
# READ COMMITTED a second sealer waits here, then reads the head the first one committed.
_TAKE_HEAD = (update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(seq=_HEAD.c.seq)
              .returning(_HEAD.c.seq, _HEAD.c.hash))
_MOVE_HEAD = (update(_HEAD).where(_HEAD.c.id == HEAD_ID)
              .values(seq=bindparam("h_seq"), hash=bindparam("h_hash"), mac=bindparam("h_mac"),
                      updated_at=bindparam("h_at")))


def unsealed(session: Session, limit: int) -> list[EventRow]:
    """Up to ``limit`` events not yet in the chain, in id order."""
    return [EventRow._make(row) for row in session.execute(_UNSEALED, {"limit": limit})]


def chained(session: Session, batch: int) -> Iterator[ChainedEvent]:
    """Every sealed event in chain order, fetched ``batch`` at a time."""
    content = len(EventRow._fields)
    for row in session.execute(_CHAINED.execution_options(yield_per=batch)):
        yield ChainedEvent(EventRow._make(row[:content]), *row[content:])


def take_head(session: Session) -> tuple[int, str] | None:
    """The head's (seq, hash), locked for this transaction; None while the chain has no head row."""
    row = session.execute(_TAKE_HEAD).first()
    return None if row is None else (row.seq, row.hash)


def add_head_if_absent(session: Session, mac: str, now: dt.datetime) -> None:
    """The head of an empty chain (ON CONFLICT DO NOTHING: two first sealers may create it at once)."""
    session.execute(insert_unless_present(session, _HEAD).values(id=HEAD_ID, seq=0, hash="", mac=mac, updated_at=now))


def link(session: Session, links: Sequence[Link], head: Head, now: dt.datetime) -> None:
    """Write each event's place in the chain and move the head to the last one."""
    session.execute(_LINK, [{"b_id": one.event_id, "b_seq": one.seq, "b_prev": one.prev_hash, "b_hash": one.hash}
                            for one in links])
    session.execute(_MOVE_HEAD, {"h_seq": head.seq, "h_hash": head.hash, "h_mac": head.mac, "h_at": now})


def head(session: Session) -> Head | None:
    row = session.execute(select(_HEAD.c.seq, _HEAD.c.hash, _HEAD.c.mac).where(_HEAD.c.id == HEAD_ID)).first()
    return None if row is None else Head._make(row)


def sealed_count(session: Session) -> int:
    return _count(session, _EVENTS.c.chain_seq.is_not(None))


def unsealed_count(session: Session) -> int:
    return _count(session, _EVENTS.c.chain_seq.is_(None))


def _count(session: Session, condition: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(_EVENTS).where(condition)) or 0)
