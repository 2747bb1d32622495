"""What makes a policy document wrong beyond its syntax: unknown servers, tags and scopes, and rules that
can never match. ``parse_policy`` runs these on every file; the admin console can run them on documents
it builds (``check_document``).

A rule that can never match is rejected rather than ignored: it is almost always a typo, and a deny rule
that silently never fires is a hole.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from broker.policy.document import ALL, RULE_ID, PolicyDocument, Rule

Path = tuple[str, ...]


class KnownServer(Protocol):
    """What validation needs of a registered MCP server (``ServerInfo``, a ``Target`` or a registry
    ``Server`` all fit)."""

    @property
    def scopes(self) -> Collection[str]: ...

    @property
    def tags(self) -> Collection[str]: ...


@dataclass(frozen=True)
class ServerInfo:
    scopes: frozenset[str]
    tags: frozenset[str] = frozenset()
    builtin: bool = False  # the broker's admin API: covered only by rules naming it


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy; ``line`` is 1-based, None when no line applies."""

    line: int | None
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        where = [f"line {self.line}"] if self.line is not None else []
        where += [f"rule {self.rule_id}"] if self.rule_id else []
        return f"{', '.join(where)}: {self.message}" if where else self.message


class PolicyError(ValueError):
    """A policy that must not be applied, with every problem found (not just the first)."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in the policy"
        super().__init__("\n".join([count, *(f"  {p}" for p in self.problems)]))


def check_document(document: PolicyDocument, known_servers: Mapping[str, KnownServer]) -> list[Problem]:
    """Every problem of ``document`` against the registered servers (without line numbers)."""
    ids = [rule.id for rule in document.rules]
    problems = [Problem(None, ids[n], message) for n, message in duplicate_ids(ids)]
    for rule in document.rules:
        problems += [Problem(None, rule.id, message) for _, message in rule_findings(rule, known_servers)]
    return problems


def duplicate_ids(ids: Sequence[str | None]) -> Iterator[tuple[int, str]]:
    """(index, message) for every rule whose id an earlier rule already uses."""
    first: dict[str, int] = {}
    for n, rule_id in enumerate(ids):
        if rule_id is None:
            continue
        if rule_id in first:
            yield n, f"duplicate rule id {rule_id!r} (rule {first[rule_id] + 1} has it too)"
        first.setdefault(rule_id, n)


def rule_findings(rule: Rule, known: Mapping[str, KnownServer]) -> Iterator[tuple[Path, str]]:
    """(key path inside the rule, message) for everything wrong with one rule."""
    if not RULE_ID.match(rule.id):
        yield ("id",), f"rule id {rule.id!r} must be a slug: a-z, 0-9, '-' and '_', at most 63 characters"
    yield from _never_matches(rule)
    yield from _unknown_targets(rule, known)
    yield from _unknown_scopes(rule, known)
    yield from _impossible_conditions(rule)


def _never_matches(rule: Rule) -> Iterator[tuple[Path, str]]:
    if rule.subjects.is_empty():
        yield ("subjects",), "the rule has no subjects, so it can never match"
    if rule.targets.is_empty():
        yield ("targets",), "the rule has no targets, so it can never match"
    if not rule.scopes:
        what = "grants, or \"*\" for all of a server's" if rule.effect == "allow" else \
            "denies, or \"*\" for the whole server"
        yield ("scopes",), f"the rule has no scopes; list the scopes it {what}"


def _unknown_targets(rule: Rule, known: Mapping[str, KnownServer]) -> Iterator[tuple[Path, str]]:
    for server in rule.targets.servers:
        if server not in known:
            yield ("targets", "servers"), f"unknown server {server!r}"
    tagged = {tag for info in _ordinary(known).values() for tag in info.tags}
    for tag in rule.targets.tags:
        if tag not in tagged:
            yield ("targets", "tags"), f"no registered server has the tag {tag!r}"


def _unknown_scopes(rule: Rule, known: Mapping[str, KnownServer]) -> Iterator[tuple[Path, str]]:
    if rule.scopes == ALL:
        return
    targeted = targeted_servers(rule, known)
    if not targeted:
        return  # the unknown servers or tags are reported already
    offered = {scope for server_id in targeted for scope in known[server_id].scopes}
    where = f"server {targeted[0]}" if len(targeted) == 1 else f"any of the {len(targeted)} targeted servers"
    for scope in rule.scopes:
        if scope not in offered:
            yield ("scopes",), f"unknown scope {scope!r}: not a scope of {where}"


def targeted_servers(rule: Rule, known: Mapping[str, KnownServer]) -> list[str]:
    """The registered servers a rule covers (sorted), by id, tag or ``all``."""
    ordinary = _ordinary(known)
    covered = {s for s in rule.targets.servers if s in known}
    covered |= {s for s, info in ordinary.items() if rule.targets.all or not set(rule.targets.tags).isdisjoint(
        info.tags)}
    return sorted(covered)


def _ordinary(known: Mapping[str, KnownServer]) -> dict[str, KnownServer]:
    return {server_id: info for server_id, info in known.items() if not getattr(info, "builtin", False)}


def _impossible_conditions(rule: Rule) -> Iterator[tuple[Path, str]]:
    c = rule.conditions
    if c.not_before is not None and c.not_after is not None and c.not_after < c.not_before:
        yield ("conditions", "not_after"), "not_after is before not_before, so the rule can never match"
    if not rule.subjects.only_clients():
        return
    for name in ("acr", "amr"):
        if getattr(c, name):
            yield ("conditions", name), f"{name} never holds for clients acting for themselves, the rule's only " \
                                         "subjects, so it can never match"
    if c.clients and set(c.clients).isdisjoint(rule.subjects.clients):
        yield ("conditions", "clients"), "none of the rule's subject clients is in conditions.clients, so it " \
                                         "can never match"
