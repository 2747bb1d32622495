"""Searching the audit log the way people ask: by a user's email or name, a client's or server's name, the
outcome, free text and a time range; newest first, a page at a time (keyset on id), or streamed for export.

A search names people and things; ``resolve`` turns the names into ids first (each at most
``MAX_MATCHES``), so the query on the events stays on their indexes
(docs/decisions/0006-audit-search-and-console-pages.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Text, cast, false, func, or_, select
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from broker.audit import Outcome
from broker.storage import mcp_servers
from broker.storage.models import AuditEvent, Client, User
from broker.storage.search import contains

PAGE_SIZE = 50
MAX_MATCHES = 1000  # users (or clients, servers) one name may stand for
MAX_TEXT = 200
TEXT_WINDOW = 20_000  # events a text search reads per page: a pass over the data that no index serves
# outcome filters as people say them -> the outcomes events record
OUTCOMES: dict[str, tuple[str, ...]] = {
    "allowed": (Outcome.SUCCESS, Outcome.ALLOWED), "denied": (Outcome.DENIED,), "error": (Outcome.REJECTED,),
    "revoked": (Outcome.REVOKED,), "ignored": (Outcome.IGNORED,),
}
# A denied sign-in records the policy's decision and then the sign-in's failure: the failure is the denial.
NOT_DENIALS = ("authorization.decision",)


@dataclass(frozen=True)
class AuditQuery:
    """What to look for; every field optional. ``user``, ``client`` and ``server`` take an id or (part of)
    an email, name or display name; ``text`` matches the actor, the event type and the event's data;
    ``denials`` keeps one event per refused request."""

    user: str = ""
    client: str = ""
    server: str = ""
    event_type: str = ""
    outcome: str = ""
    text: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    denials: bool = False


@dataclass(frozen=True)
class Search:
    """A query turned into conditions on the events; ``unmatched`` says why no event can match; ``windowed``:
    a page reads at most ``TEXT_WINDOW`` events (a text search)."""

    conditions: tuple[ColumnElement[bool], ...]
    unmatched: str | None = None
    windowed: bool = False


@dataclass(frozen=True)
class Page:
    """Events newest first. ``next_before``: the cursor of the next (older) page, None at the end.
    ``searched_from``: for a windowed search, the oldest event id this page looked at."""

    rows: list[AuditEvent]
    next_before: int | None
    searched_from: int | None = None


def denial_conditions() -> tuple[ColumnElement[bool], ...]:
    """One event per refused request (sign-ins, token requests, console sign-ins), whatever refused it."""
    return AuditEvent.outcome == Outcome.DENIED, AuditEvent.event_type.not_in(NOT_DENIALS)


def resolve(session: Session, query: AuditQuery) -> Search:
    conditions: list[ColumnElement[bool]] = []
    for what, text, finder, column in (("user", query.user, _user_ids, AuditEvent.user_id),
                                       ("client", query.client, _client_ids, AuditEvent.client_id),
                                       ("server", query.server, _server_ids, AuditEvent.server_id)):
        if not text:
            continue
        ids = finder(session, text)
        if not ids:
            return Search((false(),), f"no {what} matches {text!r}")
        if len(ids) > MAX_MATCHES:
            return Search((false(),), f"{text!r} matches more than {MAX_MATCHES} {what}s: be more precise")
        conditions.append(column.in_(ids))
    conditions += _plain_conditions(session, query)
    return Search(tuple(conditions), windowed=bool(query.text))


def _plain_conditions(session: Session, query: AuditQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.event_type:
        conditions.append(AuditEvent.event_type == query.event_type)
    if query.outcome:
        conditions.append(AuditEvent.outcome.in_(OUTCOMES.get(query.outcome, (query.outcome,))))
    if query.denials:
        conditions += denial_conditions()
    if query.since:
        conditions.append(AuditEvent.occurred_at >= query.since)
    if query.until:
        conditions.append(AuditEvent.occurred_at < query.until)
    if query.text:
        conditions.append(_text_condition(session, query.text))
    return conditions


def _text_condition(session: Session, text: str) -> ColumnElement[bool]:
    return or_(*(contains(session, column, text)
                 for column in (AuditEvent.actor, AuditEvent.event_type, cast(AuditEvent.data, Text))))


def _user_ids(session: Session, text: str) -> list[str]:
    exact = session.scalars(select(User.id).where(or_(User.id == text, User.email == text)).limit(2)).all()
    if exact:
        return list(exact)
    return list(session.scalars(select(User.id).where(or_(contains(session, User.email, text),
                                                          contains(session, User.display_name, text)))
                                .limit(MAX_MATCHES + 1)))


def _client_ids(session: Session, text: str) -> list[str]:
    if session.get(Client, text) is not None:
        return [text]
    return list(session.scalars(select(Client.id).where(contains(session, Client.name, text))
                                .limit(MAX_MATCHES + 1)))


def _server_ids(session: Session, text: str) -> list[str]:
    if mcp_servers.get(session, text) is not None:
        return [text]
    ids = mcp_servers.ids_named(session, text, MAX_MATCHES + 1)
    return ids or [text]  # built-in targets (the admin API, sign-in) are not in the registry's table


def page(session: Session, search: Search, before_id: int | None) -> Page:
    """Newest first, ``PAGE_SIZE`` at a time (keyset on id). A windowed search reads the ``TEXT_WINDOW``
    events below the cursor and no more, so a rare word costs the same at any size of the log."""
    if search.unmatched:
        return Page([], None)
    query = select(AuditEvent).where(*search.conditions)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    floor = None
    if search.windowed:
        top = before_id if before_id is not None else (session.scalar(select(func.max(AuditEvent.id))) or 0) + 1
        floor = max(top - TEXT_WINDOW, 0)
        query = query.where(AuditEvent.id >= floor, AuditEvent.id < top)
    rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(PAGE_SIZE + 1)))
    if len(rows) > PAGE_SIZE:
        return Page(rows[:PAGE_SIZE], rows[PAGE_SIZE - 1].id, floor)
    if floor is None:
        return Page(rows, None)
    oldest = session.scalar(select(func.min(AuditEvent.id))) or 0
    return Page(rows, floor if floor > oldest else None, floor)


def stream(session: Session, search: Search) -> Iterator[AuditEvent]:
    """Every matching event, oldest first, fetched a thousand at a time (the JSON-lines export)."""
    yield from session.scalars(select(AuditEvent).where(*search.conditions).order_by(AuditEvent.id)
                               .execution_options(yield_per=1000))


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
