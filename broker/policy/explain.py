"""Why a decision came out as it did: every rule, matched or not, with the check that decided it.

``trace_rule`` walks one rule without any index; ``CompiledPolicy.explain`` runs it over every rule and
combines the matches exactly as ``decide`` does, so an explanation always agrees with the decision.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Literal

from broker.policy.document import ALL, ClaimMatch, Conditions, Rule, Subjects, Targets
from broker.policy.model import Decision, Subject, Target

Aspect = Literal["subject", "target", "condition"]


@dataclass(frozen=True)
class Check:
    """One thing a rule requires, and whether the request meets it."""

    aspect: Aspect
    ok: bool
    detail: str


@dataclass(frozen=True)
class RuleTrace:
    """One rule against one request: every check, so a reader sees all that failed, not just the first."""

    rule_id: str
    effect: str
    description: str
    checks: tuple[Check, ...]

    @property
    def matched(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok)

    def render(self) -> str:
        shown = self.checks if self.matched else self.failed
        mark = "match" if self.matched else "  -  "
        return f"[{mark}] {self.rule_id} ({self.effect}): " + "; ".join(f"{c.aspect}: {c.detail}" for c in shown)


@dataclass(frozen=True)
class Explanation:
    """The decision and every rule's trace, in document order."""

    decision: Decision
    rules: tuple[RuleTrace, ...]

    @property
    def matched(self) -> tuple[RuleTrace, ...]:
        return tuple(trace for trace in self.rules if trace.matched)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (``--json``, the console simulator)."""
        d = self.decision
        return {"allowed": d.allowed, "scopes": sorted(d.scopes), "rule_ids": list(d.rule_ids), "reason": d.reason,
                "rules": [{"id": t.rule_id, "effect": t.effect, "description": t.description, "matched": t.matched,
                           "checks": [{"aspect": c.aspect, "ok": c.ok, "detail": c.detail} for c in t.checks]}
                          for t in self.rules]}

    def render(self) -> str:
        d = self.decision
        head = f"allowed: {' '.join(sorted(d.scopes))}" if d.allowed else "denied"
        lines = [f"{head} ({d.reason})", f"rules: {len(self.matched)} of {len(self.rules)} matched"]
        lines += ["  " + trace.render() for trace in self.rules]
        return "\n".join(lines)


def trace_rule(rule: Rule, subject: Subject, client_id: str, target: Target, now: dt.datetime, *,
               any_client: bool = False, any_login: bool = False) -> RuleTrace:
    checks = (_subject_check(rule.subjects, subject), target_check(rule.targets, target),
              *_condition_checks(rule.conditions, client_id, subject, now, any_client, any_login))
    return RuleTrace(rule.id, rule.effect, rule.description, checks)


# -------------------------------------------------------------------- subjects


def _subject_check(selectors: Subjects, subject: Subject) -> Check:
    if subject.kind == "client":
        if subject.id in selectors.clients:
            return Check("subject", True, f"client {subject.id}")
        return Check("subject", False, f"client {subject.id} is not named in subjects.clients (clients acting "
                                       "for themselves match only rules that name them)")
    hits = _user_hits(selectors, subject) if subject.kind == "user" else []
    if hits:
        return Check("subject", True, ", ".join(hits))
    listed = describe_subjects(selectors) or "no subjects at all"
    return Check("subject", False, f"{subject.email or subject.id or 'the person'} matches none of: {listed}")


def _user_hits(selectors: Subjects, subject: Subject) -> list[str]:
    email = subject.email.casefold() if subject.email else None
    hits = [f"user id {u}" for u in selectors.users if u == subject.id]
    hits += [f"user {u}" for u in selectors.users if email is not None and u.casefold() == email]
    hits += [f"group {g}" for g in selectors.groups if g in subject.groups]
    hits += [f"claim {claim_text(c)}" for c in selectors.claims if claim_holds(c, subject.claims.get(c.name))]
    hits += [f"idp {i}" for i in selectors.idps if i == subject.idp_id]
    return hits + (["everyone"] if selectors.everyone else [])


def claim_holds(match: ClaimMatch, value: object) -> bool:
    """Type-strict equality; a list or tuple claim holds when one of its items is equal."""
    items = value if isinstance(value, list | tuple) else (value,)
    return any(type(item) is type(match.value) and item == match.value for item in items)


def claim_text(match: ClaimMatch) -> str:
    return f"{match.name} = {json.dumps(match.value)}"


def describe_subjects(selectors: Subjects) -> str:
    parts = [(name, list(getattr(selectors, name))) for name in ("users", "groups", "idps", "clients")]
    parts.insert(2, ("claims", [claim_text(c) for c in selectors.claims]))
    text = [f"{name} {', '.join(values)}" for name, values in parts if values]
    return "; ".join(text + (["everyone"] if selectors.everyone else []))


# -------------------------------------------------------------------- targets


def target_check(targets: Targets, target: Target) -> Check:
    if target.id in targets.servers:
        return Check("target", True, f"server {target.id}")
    if target.builtin:
        return Check("target", False, f"{target.id} is built in: only rules naming it in targets.servers cover it")
    tags = [tag for tag in targets.tags if tag in target.tags]
    if tags:
        return Check("target", True, f"tag {', '.join(tags)}")
    if targets.all:
        return Check("target", True, "all servers")
    return Check("target", False, f"{target.id} is not among: {describe_targets(targets) or 'no targets at all'}")


def describe_targets(targets: Targets) -> str:
    parts = [f"servers {', '.join(targets.servers)}" if targets.servers else "",
             f"tags {', '.join(targets.tags)}" if targets.tags else "", "all servers" if targets.all else ""]
    return "; ".join(part for part in parts if part)


# -------------------------------------------------------------------- conditions


def describe_conditions(c: Conditions) -> str:
    """The conditions as a line a person reads (empty: none)."""
    parts = [f"through client {', '.join(c.clients)}" if c.clients else "",
             f"acr {', '.join(c.acr)}" if c.acr else "", f"amr has {', '.join(c.amr)}" if c.amr else "",
             f"from {timestamp(c.not_before)}" if c.not_before else "",
             f"through {timestamp(c.not_after)}" if c.not_after else ""]
    return "; ".join(part for part in parts if part)


def describe_rule(rule: Rule) -> dict[str, str]:
    """A rule as the console's rules table shows it: one line per aspect."""
    scopes = "all of the server's" if rule.scopes == ALL else " ".join(rule.scopes)
    if rule.effect == "deny" and rule.scopes == ALL:
        scopes = "the whole server"
    return {"effect": rule.effect, "subjects": describe_subjects(rule.subjects) or "none",
            "targets": describe_targets(rule.targets) or "none", "scopes": scopes,
            "conditions": describe_conditions(rule.conditions), "description": rule.description}


def _condition_checks(c: Conditions, client_id: str, subject: Subject, now: dt.datetime, any_client: bool,
                      any_login: bool) -> list[Check]:
    checks = []
    if c.clients:
        ok = any_client or client_id in c.clients
        checks.append(Check("condition", ok, _one_of("client", "assumed" if any_client else client_id, ok, c.clients)))
    if c.acr:
        ok = any_login or subject.acr in c.acr
        checks.append(Check("condition", ok, _one_of("acr", "assumed" if any_login else subject.acr, ok, c.acr)))
    if c.amr:
        ok = any_login or not set(c.amr).isdisjoint(subject.amr)
        shown = "assumed" if any_login else " ".join(subject.amr) or "none"
        checks.append(Check("condition", ok, f"amr {shown} {'has' if ok else 'has none of'} {', '.join(c.amr)}"))
    if c.not_before is not None:
        ok = now >= c.not_before
        checks.append(Check("condition", ok, f"{'valid from' if ok else 'not valid before'} {timestamp(c.not_before)}"))
    if c.not_after is not None:
        ok = now <= c.not_after
        checks.append(Check("condition", ok, f"{'valid through' if ok else 'expired after'} {timestamp(c.not_after)}"))
    return checks


def _one_of(what: str, value: str | None, ok: bool, allowed: tuple[str, ...]) -> str:
    return f"{what} {value or 'none'} {'is' if ok else 'is not'} one of {', '.join(allowed)}"


def timestamp(value: dt.datetime) -> str:
    """UTC, RFC 3339 with ``Z``: how the policy file writes instants."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
