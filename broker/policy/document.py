"""A policy document: allow and deny rules as plain data, exactly what a policy file holds.

The types are canonical: every collection is stored sorted and without duplicates, and timestamps
are stored in UTC, so two documents that mean the same rules compare equal and serialise to the
same text (``dump_policy``). Nothing here decides anything; ``broker.policy.engine`` does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

ALL: Literal["*"] = "*"
"""``scopes = "*"``: every scope of the targeted server (allow), or the whole server (deny)."""

RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
Effect = Literal["allow", "deny"]
ClaimValue = str | int | bool
Scopes = tuple[str, ...] | Literal["*"]


def _canonical(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(items)))


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("policy timestamps must carry a UTC offset")
    return value.astimezone(dt.UTC)


@dataclass(frozen=True, eq=False)
class ClaimMatch:
    """``name = value`` on the upstream IdP's claims; a list-valued claim matches when it contains the value.

    Comparison is type-strict: the claim ``true`` does not match ``1`` or ``"true"``.
    """

    name: str
    value: ClaimValue

    def __post_init__(self) -> None:
        if type(self.value) not in (str, int, bool):
            raise ValueError(f"claim {self.name!r}: a value must be a string, an integer or a boolean")

    def key(self) -> tuple[str, str, ClaimValue]:
        return (self.name, type(self.value).__name__, self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClaimMatch) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


@dataclass(frozen=True)
class Subjects:
    """Whom a rule is about. A request's subject matches when it matches ANY selector listed.

    ``users`` holds broker user ids or emails (emails compare case-insensitively). ``clients`` names
    clients acting for themselves (client credentials); they match nothing else, and ``everyone``
    means every user, never a client.
    """

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    claims: tuple[ClaimMatch, ...] = ()
    idps: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    everyone: bool = False

    def __post_init__(self) -> None:
        for name in ("users", "groups", "idps", "clients"):
            object.__setattr__(self, name, _canonical(getattr(self, name)))
        object.__setattr__(self, "claims", tuple(sorted(set(self.claims), key=_claim_order)))

    def is_empty(self) -> bool:
        return not (self.users or self.groups or self.claims or self.idps or self.clients or self.everyone)

    def only_clients(self) -> bool:
        return bool(self.clients) and not (self.users or self.groups or self.claims or self.idps or self.everyone)


def _claim_order(match: ClaimMatch) -> tuple[str, int, str]:
    kind = {"bool": 0, "int": 1, "str": 2}[type(match.value).__name__]
    return (match.name, kind, repr(match.value) if kind < 2 else str(match.value))


@dataclass(frozen=True)
class Targets:
    """Which MCP servers a rule covers: by id, by tag, or all.

    Built-in targets (the broker's admin API) are covered only by rules naming their id in ``servers``.
    """

    servers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    all: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "servers", _canonical(self.servers))
        object.__setattr__(self, "tags", _canonical(self.tags))

    def is_empty(self) -> bool:
        return not (self.servers or self.tags or self.all)


@dataclass(frozen=True)
class Conditions:
    """Extra requirements on the request; every condition listed must hold.

    ``clients``: the OAuth client the request comes through is one of these. ``acr``: the login's
    ``acr`` is one of these. ``amr``: the login's ``amr`` contains any of these (e.g. ``mfa``).
    ``not_before`` / ``not_after``: the rule holds from and through these instants, both inclusive.
    """

    clients: tuple[str, ...] = ()
    acr: tuple[str, ...] = ()
    amr: tuple[str, ...] = ()
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None

    def __post_init__(self) -> None:
        for name in ("clients", "acr", "amr"):
            object.__setattr__(self, name, _canonical(getattr(self, name)))
        object.__setattr__(self, "not_before", _utc(self.not_before))
        object.__setattr__(self, "not_after", _utc(self.not_after))

    def is_empty(self) -> bool:
        return self == Conditions()


@dataclass(frozen=True)
class Rule:
    """One allow or deny rule.

    ``scopes``: for an allow, the scopes granted (``"*"``: all of the server's); for a deny, the
    scopes taken away (``"*"``: the whole server). A rule with no subjects, no targets or no scopes
    never matches anything; ``check_document`` reports such rules.
    """

    id: str
    effect: Effect
    subjects: Subjects = field(default_factory=Subjects)
    targets: Targets = field(default_factory=Targets)
    scopes: Scopes = ()
    description: str = ""
    conditions: Conditions = field(default_factory=Conditions)

    def __post_init__(self) -> None:
        if self.effect not in ("allow", "deny"):
            raise ValueError(f"rule {self.id!r}: effect must be 'allow' or 'deny', not {self.effect!r}")
        if self.scopes != ALL:
            if isinstance(self.scopes, str):
                raise ValueError(f"rule {self.id!r}: scopes must be a list of names or '*'")
            object.__setattr__(self, "scopes", _canonical(self.scopes))


@dataclass(frozen=True)
class PolicyDocument:
    """Every rule, in the order written. Order never changes a decision (deny always overrides allow)."""

    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)
