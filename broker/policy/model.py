"""The policy engine's own types: what is asked, and what is decided."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class Subject:
    """Who wants access: a user (from the IdP) or a client acting for itself (client credentials)."""

    kind: Literal["user", "client"]
    id: str
    email: str | None = None
    idp_id: str | None = None
    groups: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)
    acr: str | None = None
    amr: tuple[str, ...] = ()
    # client subjects: the scopes the client was registered for
    client_scopes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Target:
    """The MCP server asked for."""

    id: str
    scopes: frozenset[str]
    default_scopes: frozenset[str]
    tags: frozenset[str] = frozenset()
    builtin: bool = False


@dataclass(frozen=True)
class AccessRequest:
    subject: Subject
    client_id: str
    target: Target
    requested_scopes: frozenset[str] | None  # None: the client asked for no particular scope
    now: dt.datetime


@dataclass(frozen=True)
class Decision:
    """The answer, with its reasons: which rules matched, and a sentence a person can read."""

    allowed: bool
    scopes: frozenset[str]
    rule_ids: tuple[str, ...]
    reason: str

    @classmethod
    def deny(cls, reason: str, rule_ids: tuple[str, ...] = ()) -> Decision:
        return cls(False, frozenset(), rule_ids, reason)


class Policy(Protocol):
    def decide(self, request: AccessRequest) -> Decision:
        """Decide one request. Must not do I/O; must deny when nothing allows."""
        ...


class PolicySource(Protocol):
    """Where the protocol core gets the policy in force for this request (it may have changed): in a cold-lane
    session, or in a transaction of the hot lane."""

    def current(self, session: Any) -> Policy:
        ...

    async def current_hot(self, tx: Any) -> Policy:
        ...
