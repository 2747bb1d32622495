"""Names for the ids events and sessions carry: users by email and display name, clients and servers by name.

Pages show names and keep the id one hover (or one click) away. ``for_events`` looks every id of a page
of events up in three statements; an id that no longer resolves (a client deleted) shows as itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from broker.storage import clients as client_repo
from broker.storage import mcp_servers, users
from broker.storage.models import AuditEvent


@dataclass(frozen=True)
class Person:
    id: str
    email: str | None
    display_name: str

    @property
    def label(self) -> str:
        """``Ada Lovelace <ada@example.com>``, or whichever of the two is known, or the id."""
        if self.display_name and self.email:
            return f"{self.display_name} <{self.email}>"
        return self.display_name or self.email or self.id


@dataclass(frozen=True)
class Actor:
    """Who did something, as a person reads it: ``label``, with the raw actor string as ``title``."""

    label: str
    title: str
    user_id: str | None = None


# the actor prefixes the broker writes, and what they mean
_PREFIXES = {"console": "", "client": "client ", "cli": "CLI ", "idp": "IdP ", "scim": "SCIM ", "system": "system"}


@dataclass(frozen=True)
class Names:
    users: dict[str, Person] = field(default_factory=dict)
    clients: dict[str, str] = field(default_factory=dict)
    servers: dict[str, str] = field(default_factory=dict)
    emails: dict[str, Person] = field(default_factory=dict)  # console actors: ``console:<the user's email>``

    def user(self, user_id: str | None) -> Person | None:
        return self.users.get(user_id) if user_id else None

    def client(self, client_id: str | None) -> str:
        return self.clients.get(client_id, client_id or "") if client_id else ""

    def server(self, server_id: str | None) -> str:
        return self.servers.get(server_id, server_id or "") if server_id else ""

    def actor(self, actor: str | None) -> Actor:
        text = actor or ""
        kind, sep, rest = text.partition(":")
        if text in self.clients:  # the protocol core names the client itself as the actor
            return Actor(self.clients[text], text)
        if sep and kind == "client" and rest in self.clients:
            return Actor(f"client {self.clients[rest]}", text)
        if sep and kind == "console":
            person = self.emails.get(rest)
            return Actor(person.label if person else rest, text, person.id if person else None)
        if sep and kind in _PREFIXES:
            return Actor(f"{_PREFIXES[kind]}{rest}", text)
        return Actor(text, text)


def lookup(session: Session, user_ids: Iterable[str] = (), client_ids: Iterable[str] = (),
           server_ids: Iterable[str] = (), emails: Iterable[str] = ()) -> Names:
    """The names of these ids (each kind in one statement; nothing is asked for an empty set)."""
    wanted_users, wanted_emails = set(filter(None, user_ids)), set(filter(None, emails))
    people = [Person(*row) for row in users.named(session, ids=wanted_users)]
    by_email = [Person(*row) for row in users.named(session, emails=wanted_emails)]
    return Names(users={p.id: p for p in people},
                 clients=client_repo.names(session, set(filter(None, client_ids))),
                 servers=mcp_servers.names(session, set(filter(None, server_ids))),
                 emails={p.email: p for p in by_email if p.email})


def for_events(session: Session, events: Iterable[AuditEvent]) -> Names:
    """Names for everything a page of events mentions, actors included."""
    rows = list(events)
    clients, emails = _actor_ids([event.actor or "" for event in rows])
    return lookup(session, [event.user_id for event in rows if event.user_id],
                  clients + [event.client_id for event in rows if event.client_id],
                  [event.server_id for event in rows if event.server_id], emails)


def for_actors(session: Session, actors: Iterable[str]) -> Names:
    """Names for actor strings alone (a policy version's author)."""
    clients, emails = _actor_ids(list(actors))
    return lookup(session, client_ids=clients, emails=emails)


def _actor_ids(actors: list[str]) -> tuple[list[str], list[str]]:
    """The client ids and console emails actor strings may name."""
    clients = [a.partition(":")[2] if a.startswith("client:") else a for a in actors]
    return clients, [a.partition(":")[2] for a in actors if a.startswith("console:")]
