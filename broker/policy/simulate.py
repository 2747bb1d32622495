"""Simulations for operators: who can reach a server, and what a policy change would change. Pure: the
caller passes users and servers in (``broker policy who-can``, ``import --dry-run``, the console simulator).

A simulation imagines a login. Unless told otherwise (``client_id``, ``acr``/``amr``), it assumes the
login satisfies every client and authentication-strength condition, so it answers "the most this user
could get". Validity windows are evaluated at ``now``.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from broker.policy.document import PolicyDocument, Rule
from broker.policy.engine import CompiledPolicy, CompiledRule
from broker.policy.explain import target_check
from broker.policy.model import Subject, Target
from broker.policy.policyfile import dump_rule


@dataclass(frozen=True)
class UserFacts:
    """A user as the broker knows them between logins: identity, groups and the last upstream claims."""

    id: str
    email: str | None = None
    idp_id: str | None = None
    groups: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def label(self) -> str:
        return self.email or self.id

    def subject(self, acr: str | None = None, amr: Sequence[str] = ()) -> Subject:
        return Subject(kind="user", id=self.id, email=self.email, idp_id=self.idp_id, groups=self.groups,
                       claims=self.claims, acr=acr, amr=tuple(amr))


@dataclass(frozen=True)
class Assumptions:
    """The imagined login: ``client_id`` None means any client; ``acr`` and ``amr`` both None mean a login
    strong enough for every rule."""

    now: dt.datetime
    client_id: str | None = None
    acr: str | None = None
    amr: Sequence[str] | None = None

    @property
    def any_login(self) -> bool:
        return self.acr is None and self.amr is None

    def scopes(self, policy: CompiledPolicy, user: UserFacts, target: Target) -> frozenset[str]:
        """Every scope of ``target`` this user could get (empty: no access)."""
        decision = policy.evaluate(user.subject(self.acr, self.amr or ()), target, client_id=self.client_id or "",
                                   requested=target.scopes, now=self.now, any_client=self.client_id is None,
                                   any_login=self.any_login)
        return decision.scopes if decision.allowed else frozenset()


# -------------------------------------------------------------------- who can


@dataclass(frozen=True)
class WhoCan:
    """Who can reach one server. ``groups``: groups whose membership alone gives access; ``everyone``: what a
    user in no group and with no matching claims gets (empty: nothing)."""

    server_id: str
    users: tuple[tuple[UserFacts, frozenset[str]], ...]
    groups: tuple[tuple[str, frozenset[str]], ...]
    everyone: frozenset[str]


def who_can(policy: CompiledPolicy, server: Target, users: Iterable[UserFacts], *, now: dt.datetime,
            client_id: str | None = None, acr: str | None = None, amr: Sequence[str] | None = None) -> WhoCan:
    assume = Assumptions(now, client_id, acr, amr)
    reach = [(user, assume.scopes(policy, user, server)) for user in users]
    reach = sorted(((user, scopes) for user, scopes in reach if scopes), key=lambda pair: pair[0].label)
    groups = [(name, assume.scopes(policy, UserFacts("", groups=frozenset({name})), server))
              for name in sorted(policy.group_names())]
    return WhoCan(server.id, tuple(reach), tuple((name, scopes) for name, scopes in groups if scopes),
                  assume.scopes(policy, UserFacts(""), server))


# -------------------------------------------------------------------- access diff


class ScopeDelta:
    """Access to one server before and after a change (empty scopes: no access); mixed into the changes."""

    before_scopes: frozenset[str]
    after_scopes: frozenset[str]

    @property
    def kind(self) -> Literal["gains", "loses", "changes"]:
        if not self.before_scopes:
            return "gains"
        return "loses" if not self.after_scopes else "changes"

    def delta(self) -> str:
        gained = [f"+{scope}" for scope in sorted(self.after_scopes - self.before_scopes)]
        lost = [f"-{scope}" for scope in sorted(self.before_scopes - self.after_scopes)]
        return " ".join(gained + lost)


@dataclass(frozen=True)
class Change(ScopeDelta):
    """One user's access to one server, before and after a policy change."""

    user: UserFacts
    server_id: str
    before_scopes: frozenset[str]
    after_scopes: frozenset[str]

    def render(self) -> str:
        return f"{self.user.label} {self.kind} {self.server_id}: {self.delta()}"


def diff_access(old: CompiledPolicy, new: CompiledPolicy, servers: Iterable[Target], users: Iterable[UserFacts], *,
                now: dt.datetime, client_id: str | None = None, acr: str | None = None,
                amr: Sequence[str] | None = None) -> list[Change]:
    """Which users gain or lose which servers (or scopes). Only (user, server) pairs that a changed rule
    could touch are evaluated, so this stays fast on a large directory."""
    assume = Assumptions(now, client_id, acr, amr)
    targets = {target.id: target for target in servers}
    delta = CompiledPolicy(PolicyDocument(changed_rules(old.document, new.document)))
    reach = {rule: targeted(rule, targets.values()) for rule in delta.rules}
    changes = []
    for user in users:
        touched = {server_id for rule in delta.rules_about(user.subject()) for server_id in reach[rule]}
        for server_id in sorted(touched):
            before, after = (assume.scopes(policy, user, targets[server_id]) for policy in (old, new))
            if before != after:
                changes.append(Change(user, server_id, before, after))
    return sorted(changes, key=lambda c: (c.user.label, c.server_id))


def changed_rules(old: PolicyDocument, new: PolicyDocument) -> tuple[Rule, ...]:
    """The rules of either document that the other does not hold unchanged."""
    kept_old, kept_new = set(old.rules), set(new.rules)
    return tuple(rule for rule in old.rules if rule not in kept_new) + \
        tuple(rule for rule in new.rules if rule not in kept_old)


def targeted(rule: CompiledRule, targets: Iterable[Target]) -> frozenset[str]:
    return frozenset(target.id for target in targets if target_check(rule.rule.targets, target).ok)


# -------------------------------------------------------------------- document diff

ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class RuleChange:
    kind: ChangeKind
    rule_id: str
    before: Rule | None
    after: Rule | None


def diff_documents(old: PolicyDocument, new: PolicyDocument) -> list[RuleChange]:
    """Rules added, removed or changed, by id (moving a rule is no change: order never matters)."""
    before = {rule.id: rule for rule in old.rules}
    after = {rule.id: rule for rule in new.rules}
    changes = []
    for rule_id in [*before, *(rule_id for rule_id in after if rule_id not in before)]:
        was, now = before.get(rule_id), after.get(rule_id)
        if was != now:
            kind: ChangeKind = "added" if was is None else "removed" if now is None else "changed"
            changes.append(RuleChange(kind, rule_id, was, now))
    return changes


def render_document_diff(changes: Iterable[RuleChange]) -> str:
    """The changes as text: each rule's policy-file lines marked ``-`` (before) and ``+`` (after)."""
    blocks = []
    for change in changes:
        was = dump_rule(change.before).splitlines() if change.before else []
        now = dump_rule(change.after).splitlines() if change.after else []
        lines = [line for line in difflib.ndiff(was, now) if not line.startswith("? ")]
        blocks.append("\n".join([f"{change.kind} rule {change.rule_id}", *(f"  {line}".rstrip() for line in lines)]))
    return "\n\n".join(blocks) + ("\n" if blocks else "")
