"""The audit log's search: events matching a filter of plain values, newest first a page at a time (keyset on
id), or streamed oldest first; the ids a user's or client's name stands for; the event types recorded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import ColumnElement, Select, Text, cast, func, or_, select
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from broker.storage.activity import denial_conditions
from broker.storage.models import AuditEvent, Client, User
from broker.storage.search import contains

EXPORT_BATCH = 1000  # events ``stream`` fetches at a time


@dataclass(frozen=True)
class EventFilter:
    """What the events must match; a field left at its default matches any event. ``user_ids``,
    ``client_ids``, ``server_ids``: one of the ids; ``outcomes``: one of them; ``text``: part of the actor, the
    event type or the event's data; ``denials``: one event per refused request."""

    user_ids: tuple[str, ...] | None = None
    client_ids: tuple[str, ...] | None = None
    server_ids: tuple[str, ...] | None = None
    event_type: str = ""
    outcomes: tuple[str, ...] = ()
    denials: bool = False
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str = ""


class EventPage(NamedTuple):
    """Events newest first. ``next_before``: the cursor of the next (older) page, None at the end.
    ``searched_from``: for a windowed search, the oldest event id this page looked at."""

    rows: list[AuditEvent]
    next_before: int | None
    searched_from: int | None = None


def user_ids(session: Session, text: str, limit: int) -> list[str]:
    """The user whose id or email is ``text``; else up to ``limit`` whose email or display name contains it."""
    exact = session.scalars(select(User.id).where(or_(User.id == text, User.email == text)).limit(2)).all()
    if exact:
        return list(exact)
    return list(session.scalars(select(User.id).where(or_(contains(session, User.email, text),
                                                          contains(session, User.display_name, text)))
                                .limit(limit)))


def client_ids(session: Session, text: str, limit: int) -> list[str]:
    """The client whose id is ``text``; else up to ``limit`` whose name contains it."""
    if session.get(Client, text) is not None:
        return [text]
    return list(session.scalars(select(Client.id).where(contains(session, Client.name, text)).limit(limit)))


def page(session: Session, found: EventFilter, before_id: int | None, size: int,
         window: int | None = None) -> EventPage:
    """Newest first, ``size`` at a time (keyset on id). With a ``window``, a page reads the ``window`` events
    below the cursor and no more, so a rare word costs the same at any size of the log."""
    query = _matching(session, found)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    floor = None
    if window is not None:
        top = before_id if before_id is not None else (session.scalar(select(func.max(AuditEvent.id))) or 0) + 1
        floor = max(top - window, 0)
        query = query.where(AuditEvent.id >= floor, AuditEvent.id < top)
    rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(size + 1)))
    if len(rows) > size:
        return EventPage(rows[:size], rows[size - 1].id, floor)
    if floor is None:
        return EventPage(rows, None)
    oldest = session.scalar(select(func.min(AuditEvent.id))) or 0
    return EventPage(rows, floor if floor > oldest else None, floor)


def stream(session: Session, found: EventFilter) -> Iterator[AuditEvent]:
    """Every matching event, oldest first, fetched ``EXPORT_BATCH`` at a time (the JSON-lines export)."""
    yield from session.scalars(_matching(session, found).order_by(AuditEvent.id)
                               .execution_options(yield_per=EXPORT_BATCH))


def _matching(session: Session, found: EventFilter) -> Select[AuditEvent]:
    conditions: list[ColumnElement[bool]] = [
        column.in_(ids) for column, ids in ((AuditEvent.user_id, found.user_ids),
                                            (AuditEvent.client_id, found.client_ids),
                                            (AuditEvent.server_id, found.server_ids)) if ids is not None]
    if found.event_type:
        conditions.append(AuditEvent.event_type == found.event_type)
    if found.outcomes:
        conditions.append(AuditEvent.outcome.in_(found.outcomes))
    if found.denials:
        conditions += denial_conditions()
    if found.since:
        conditions.append(AuditEvent.occurred_at >= found.since)
    if found.until:
        conditions.append(AuditEvent.occurred_at < found.until)
    if found.text:
        conditions.append(or_(*(contains(session, column, found.text) for column in (
            AuditEvent.actor, AuditEvent.event_type, cast(AuditEvent.data, Text)))))
    return select(AuditEvent).where(*conditions)


# A loose index scan: one probe of the (event_type, occurred_at) index per distinct type, not a pass over every
# event (SELECT DISTINCT reads the whole index: ~20 ms at 100,000 events on SQLite).
_EVENT_TYPES = sql("""
WITH RECURSIVE found(name) AS (
    SELECT min(event_type) FROM audit_events
    UNION ALL
    SELECT (SELECT min(event_type) FROM audit_events WHERE event_type > found.name) FROM found
    WHERE found.name IS NOT NULL
)
SELECT name FROM found WHERE name IS NOT NULL
""")


def event_types(session: Session) -> list[str]:
    """Every event type recorded, in order."""
    return list(session.scalars(_EVENT_TYPES))
