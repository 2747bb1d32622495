"""The access matrix: subjects x MCP servers, each cell the scopes granted and the rules that decide it.

Pure: the caller passes the servers, the known groups and any users in. A row is a subject the rules
are about (everyone, a group, a claim, an IdP) or a known user; its cell is what a login as that
subject alone could get ("the most": any client, a login strong enough for every rule, validity
windows at ``now``), like every simulation in ``broker.policy.simulate``. A group's row is a member of
that group only, so it shows what membership gives on top of what everyone gets.
``diff_subjects`` compares two policies over the same rows: the groups (and other subjects) that
gain or lose a server or scope, which a dry run can report even before any user has signed in.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from broker.policy.document import ALL, PolicyDocument, Rule
from broker.policy.engine import CompiledPolicy
from broker.policy.explain import claim_text
from broker.policy.model import Target
from broker.policy.simulate import Assumptions, ScopeDelta, UserFacts, changed_rules, targeted

RowKind = Literal["everyone", "group", "claim", "idp", "user"]
CellState = Literal["allowed", "denied", "none", "offboarded"]


@dataclass(frozen=True)
class Row:
    """One subject of the matrix. ``key`` identifies it within its kind (group name, ``name = value``,
    IdP id, user id; empty for everyone); ``label`` is what a person reads."""

    kind: RowKind
    key: str
    label: str
    facts: UserFacts
    offboarded: bool = False  # a user who gets nothing, whatever the policy says


@dataclass(frozen=True)
class Cell:
    """One subject at one server: what is granted, and by which rules.

    ``withheld``: scopes the allow rules give but deny rules take away. ``conditional``: matched rules with
    conditions (clients, acr/amr, validity windows) that the simulation took as met.
    """

    scopes: frozenset[str]
    allowed_by: tuple[str, ...] = ()
    denied_by: tuple[str, ...] = ()
    withheld: frozenset[str] = frozenset()
    conditional: tuple[str, ...] = ()
    offboarded: bool = False

    @property
    def state(self) -> CellState:
        if self.offboarded:
            return "offboarded"
        if self.scopes:
            return "allowed"
        return "denied" if self.denied_by else "none"

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return self.allowed_by + self.denied_by

    def to_dict(self, server_id: str) -> dict[str, object]:
        return {"server": server_id, "state": self.state, "scopes": sorted(self.scopes),
                "allowed_by": list(self.allowed_by), "denied_by": list(self.denied_by),
                "withheld": sorted(self.withheld), "conditional": list(self.conditional)}

    def summary(self) -> str:
        """One line: the scopes, and what was denied by which rule (for text and CSV)."""
        if self.offboarded:
            return "offboarded: nothing"
        parts = [" ".join(sorted(self.scopes))] if self.scopes else []
        if self.denied_by:
            taken = " ".join(sorted(self.withheld)) or "everything"
            parts.append(f"{taken} denied by {', '.join(self.denied_by)}")
        return "; ".join(parts) or "no rule allows"


@dataclass(frozen=True)
class Matrix:
    servers: tuple[Target, ...]
    rows: tuple[Row, ...]
    cells: tuple[tuple[Cell, ...], ...]  # cells[row][server], in the order of rows and servers

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (``--json``, the admin API): the servers, then each row with one cell per server."""
        return {"servers": [server.id for server in self.servers],
                "rows": [{"kind": row.kind, "key": row.key, "label": row.label, "offboarded": row.offboarded,
                          "cells": [cell.to_dict(server.id) for server, cell in zip(self.servers, cells, strict=True)]}
                         for row, cells in zip(self.rows, self.cells, strict=True)]}

    def csv_rows(self) -> list[list[str]]:
        """A header and one line per (row, server) pair: the export's shape, one fact per column."""
        out = [["kind", "subject", "server", "state", "scopes", "allowed_by", "denied_by", "withheld", "conditional"]]
        for row, cells in zip(self.rows, self.cells, strict=True):
            for server, cell in zip(self.servers, cells, strict=True):
                out.append([row.kind, row.label, server.id, cell.state, " ".join(sorted(cell.scopes)),
                            " ".join(cell.allowed_by), " ".join(cell.denied_by), " ".join(sorted(cell.withheld)),
                            " ".join(cell.conditional)])
        return out


def subject_rows(document: PolicyDocument, groups: Iterable[str] = ()) -> list[Row]:
    """Everyone, then every group (named by a rule or given), every claim and every IdP the rules name."""
    named_groups: set[str] = set(groups)
    claims: dict[str, tuple[str, object]] = {}
    idps: set[str] = set()
    for rule in document.rules:
        named_groups.update(rule.subjects.groups)
        idps.update(rule.subjects.idps)
        for claim in rule.subjects.claims:
            claims[claim_text(claim)] = (claim.name, claim.value)
    rows = [Row("everyone", "", "everyone", UserFacts(""))]
    rows += [Row("group", name, name, UserFacts("", groups=frozenset({name}))) for name in sorted(named_groups)]
    rows += [Row("claim", text, f"claim {text}", UserFacts("", claims={name: value}))
             for text, (name, value) in sorted(claims.items())]
    rows += [Row("idp", idp, f"IdP {idp}", UserFacts("", idp_id=idp)) for idp in sorted(idps)]
    return rows


def user_row(facts: UserFacts, display: str = "", offboarded: bool = False) -> Row:
    label = f"{display} <{facts.email}>" if display and facts.email else display or facts.label
    return Row("user", facts.id, label, facts, offboarded)


def access_matrix(policy: CompiledPolicy, servers: Sequence[Target], rows: Sequence[Row], *,
                  now: dt.datetime) -> Matrix:
    assume = Assumptions(now)
    rules = {rule.id: rule for rule in policy.document.rules}
    cells = tuple(tuple(cell(policy, rules, row, server, assume) for server in servers) for row in rows)
    return Matrix(tuple(servers), tuple(rows), cells)


def cell(policy: CompiledPolicy, rules: Mapping[str, Rule], row: Row, server: Target, assume: Assumptions) -> Cell:
    decision = policy.evaluate(row.facts.subject(), server, client_id="", requested=server.scopes, now=assume.now,
                               any_client=True, any_login=True)
    matched = [rules[rule_id] for rule_id in decision.rule_ids]
    allows = [rule for rule in matched if rule.effect == "allow"]
    offered = frozenset().union(*[_scopes_of(rule, server) for rule in allows]) if allows else frozenset()
    granted = decision.scopes if decision.allowed else frozenset()
    return Cell(scopes=frozenset() if row.offboarded else granted,
                allowed_by=tuple(rule.id for rule in allows),
                denied_by=tuple(rule.id for rule in matched if rule.effect == "deny"),
                withheld=offered - granted,
                conditional=tuple(rule.id for rule in matched if not rule.conditions.is_empty()),
                offboarded=row.offboarded)


def _scopes_of(rule: Rule, server: Target) -> frozenset[str]:
    return server.scopes if rule.scopes == ALL else frozenset(rule.scopes) & server.scopes


# -------------------------------------------------------------------- subjects gaining or losing access


@dataclass(frozen=True)
class SubjectChange(ScopeDelta):
    """One subject's access to one server, before and after a policy change."""

    row: Row
    server_id: str
    before_scopes: frozenset[str]
    after_scopes: frozenset[str]

    def render(self) -> str:
        who = self.row.label if self.row.kind in ("everyone", "claim", "idp") else f"{self.row.kind} {self.row.label}"
        return f"{who} {self.kind} {self.server_id}: {self.delta()}"


def diff_subjects(old: CompiledPolicy, new: CompiledPolicy, servers: Iterable[Target], rows: Sequence[Row], *,
                  now: dt.datetime) -> list[SubjectChange]:
    """Which subjects gain or lose which servers (or scopes). A row whose change is only everyone's change
    (a group that no changed rule names) is left out: "everyone gains X" already says it."""
    assume = Assumptions(now)
    targets = {target.id: target for target in servers}
    delta = CompiledPolicy(PolicyDocument(changed_rules(old.document, new.document)))
    reach = {rule: targeted(rule, targets.values()) for rule in delta.rules}
    touched = sorted({server_id for rule in delta.rules for server_id in reach[rule]})
    everyone = {server_id: _before_after(old, new, UserFacts(""), targets[server_id], assume)
                for server_id in touched}
    changes = []
    for row in rows:
        for server_id in touched:
            before, after = _before_after(old, new, row.facts, targets[server_id], assume)
            if before != after and (row.kind == "everyone" or (before, after) != everyone[server_id]):
                changes.append(SubjectChange(row, server_id, before, after))
    return changes


def _before_after(old: CompiledPolicy, new: CompiledPolicy, facts: UserFacts, target: Target,
                  assume: Assumptions) -> tuple[frozenset[str], frozenset[str]]:
    return assume.scopes(old, facts, target), assume.scopes(new, facts, target)


# -------------------------------------------------------------------- subjects that do not exist yet


def parse_claims(pairs: Iterable[str]) -> dict[str, object]:
    """``name=value`` pairs as claims. A value that is a JSON integer, boolean or string (``3``, ``true``,
    ``"3"``) is taken as that type, anything else as text; a name given twice holds a list."""
    claims: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"claim {pair!r}: write it as name=value")
        value = _claim_value(text.strip())
        if name in claims:
            held = claims[name]
            claims[name] = [*(held if isinstance(held, list) else [held]), value]
        else:
            claims[name] = value
    return claims


def _claim_value(text: str) -> object:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if type(value) in (str, int, bool) else text


def hypothetical(groups: Iterable[str] = (), claims: Mapping[str, object] | None = None, idp: str | None = None,
                 email: str | None = None) -> UserFacts:
    """A person the broker does not know yet (a new hire), as the policy would see their first login."""
    return UserFacts(id="", email=email or None, idp_id=idp or None,
                     groups=frozenset(g.strip() for g in groups if g.strip()), claims=dict(claims or {}))
