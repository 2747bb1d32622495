"""Searching the audit log the way people ask: by a user's email or name, a client's or server's name, the
outcome, free text and a time range; newest first, a page at a time (keyset on id), or streamed for export.

A search names people and things; ``resolve`` turns the names into ids first (each at most
``MAX_MATCHES``), so the query on the events stays on their indexes
(docs/decisions/0006-audit-search-and-console-pages.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from broker.audit import Outcome
from broker.storage import event_search, mcp_servers
from broker.storage.event_search import EventFilter
from broker.storage.event_search import EventPage as Page
from broker.storage.models import AuditEvent

__all__ = ["AuditQuery", "Page", "Search", "event_types", "page", "resolve", "stream"]

PAGE_SIZE = 50
MAX_MATCHES = 1000  # users (or clients, servers) one name may stand for
MAX_TEXT = 200
TEXT_WINDOW = 20_000  # events a text search reads per page: a pass over the data that no index serves
# outcome filters as people say them -> the outcomes events record
OUTCOMES: dict[str, tuple[str, ...]] = {
    "allowed": (Outcome.SUCCESS, Outcome.ALLOWED), "denied": (Outcome.DENIED,), "error": (Outcome.REJECTED,),
    "revoked": (Outcome.REVOKED,), "ignored": (Outcome.IGNORED,),
}


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
    """A query with its names turned into ids; ``unmatched`` says why no event can match; ``windowed``:
    a page reads at most ``TEXT_WINDOW`` events (a text search)."""

    found: EventFilter = field(default_factory=EventFilter)
    unmatched: str | None = None

    @property
    def windowed(self) -> bool:
        return bool(self.found.text)


def resolve(session: Session, query: AuditQuery) -> Search:
    ids: dict[str, tuple[str, ...] | None] = {}
    finders: tuple[tuple[str, str, Callable[[Session, str], list[str]]], ...] = (
        ("user", query.user, _user_ids), ("client", query.client, _client_ids),
        ("server", query.server, _server_ids))
    for what, text, finder in finders:
        if not text:
            ids[what] = None
            continue
        matched = finder(session, text)
        if not matched:
            return Search(unmatched=f"no {what} matches {text!r}")
        if len(matched) > MAX_MATCHES:
            return Search(unmatched=f"{text!r} matches more than {MAX_MATCHES} {what}s: be more precise")
        ids[what] = tuple(matched)
    return Search(EventFilter(
        user_ids=ids["user"], client_ids=ids["client"], server_ids=ids["server"], event_type=query.event_type,
        outcomes=OUTCOMES.get(query.outcome, (query.outcome,)) if query.outcome else (),
        denials=query.denials, since=query.since, until=query.until, text=query.text))


def _user_ids(session: Session, text: str) -> list[str]:
    return event_search.user_ids(session, text, MAX_MATCHES + 1)


def _client_ids(session: Session, text: str) -> list[str]:
    return event_search.client_ids(session, text, MAX_MATCHES + 1)


def _server_ids(session: Session, text: str) -> list[str]:
    if mcp_servers.get(session, text) is not None:
        return [text]
    ids = mcp_servers.ids_named(session, text, MAX_MATCHES + 1)
    return ids or [text]  # built-in targets (the admin API, sign-in) are not in the registry's table


def page(session: Session, search: Search, before_id: int | None) -> Page:
    """Newest first, ``PAGE_SIZE`` at a time (keyset on id); a windowed search reads ``TEXT_WINDOW`` events
    below the cursor and no more, so a rare word costs the same at any size of the log."""
    if search.unmatched:
        return Page([], None)
    return event_search.page(session, search.found, before_id, PAGE_SIZE,
                             TEXT_WINDOW if search.windowed else None)


def stream(session: Session, search: Search) -> Iterator[AuditEvent]:
    """Every matching event, oldest first (the JSON-lines export); none for an unmatched search."""
    if search.unmatched:
        return iter(())
    return event_search.stream(session, search.found)


def event_types(session: Session) -> list[str]:
    """Every event type recorded, in order."""
    return event_search.event_types(session)
