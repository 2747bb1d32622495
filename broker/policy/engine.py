"""The evaluator: a policy document compiled into indexes, so a decision touches only candidate rules.

Semantics (docs/policy.md):

- A rule matches a request when its subjects, its targets and all of its conditions match.
- No matching allow rule: deny (so an empty rule set denies everything).
- A matching deny rule with ``scopes = "*"`` denies the server outright.
- Otherwise granted = wanted ∩ (union of the matching allows' scopes) − (union of the matching denies'
  scopes), where wanted is the requested scopes, or the server's default scopes when none were requested.
  A client acting for itself never gets more than the scopes it was registered for.
- An empty grant is a deny.

Rule order never matters. ``decide`` and ``explain`` share ``_combine``, and tests check that the indexed
candidate search agrees with ``explain``'s rule-by-rule walk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from broker.policy.document import ALL, PolicyDocument, Rule
from broker.policy.explain import Explanation, trace_rule
from broker.policy.model import AccessRequest, Decision, Subject, Target

_SCALARS = (str, int, bool)


class CompiledRule:
    """A rule as the evaluator uses it: scope and condition sets ready for membership tests."""

    __slots__ = ("rule", "id", "order", "deny", "scopes", "conditional", "clients", "acr", "amr",
                 "not_before", "not_after")

    def __init__(self, rule: Rule, order: int):
        c = rule.conditions
        self.rule, self.id, self.order, self.deny = rule, rule.id, order, rule.effect == "deny"
        self.scopes = None if rule.scopes == ALL else frozenset(rule.scopes)  # None: all of the server's
        self.clients = frozenset(c.clients) if c.clients else None
        self.acr = frozenset(c.acr) if c.acr else None
        self.amr = frozenset(c.amr) if c.amr else None
        self.not_before, self.not_after = c.not_before, c.not_after
        self.conditional = not c.is_empty()

    def holds(self, client_id: str, subject: Subject, now: dt.datetime, any_client: bool, any_login: bool) -> bool:
        """Whether every condition holds; ``any_*`` (simulations) take the client / login as satisfying."""
        if self.clients is not None and not any_client and client_id not in self.clients:
            return False
        if not any_login:
            if self.acr is not None and subject.acr not in self.acr:
                return False
            if self.amr is not None and self.amr.isdisjoint(subject.amr):
                return False
        if self.not_before is not None and now < self.not_before:
            return False
        return self.not_after is None or now <= self.not_after


class _SubjectIndex:
    """Rules by subject key: user id, email, group, IdP, client, claim (name, typed value), everyone."""

    __slots__ = ("ids", "emails", "groups", "idps", "clients", "claims", "everyone")

    def __init__(self) -> None:
        self.ids: dict[str, list[CompiledRule]] = {}
        self.emails: dict[str, list[CompiledRule]] = {}
        self.groups: dict[str, list[CompiledRule]] = {}
        self.idps: dict[str, list[CompiledRule]] = {}
        self.clients: dict[str, list[CompiledRule]] = {}
        self.claims: dict[str, dict[tuple[type, object], list[CompiledRule]]] = {}
        self.everyone: list[CompiledRule] = []

    def add(self, rule: CompiledRule) -> None:
        subjects = rule.rule.subjects
        for user in subjects.users:
            self.ids.setdefault(user, []).append(rule)
            self.emails.setdefault(user.casefold(), []).append(rule)
        for keyed, names in ((self.groups, subjects.groups), (self.idps, subjects.idps),
                             (self.clients, subjects.clients)):
            for name in names:
                keyed.setdefault(name, []).append(rule)
        for claim in subjects.claims:
            self.claims.setdefault(claim.name, {}).setdefault((type(claim.value), claim.value), []).append(rule)
        if subjects.everyone:
            self.everyone.append(rule)

    def match(self, subject: Subject) -> list[CompiledRule]:
        """Rules whose subjects match (with repeats when a rule matches by two keys)."""
        if subject.kind != "user":
            return list(self.clients.get(subject.id, ())) if subject.kind == "client" else []
        found = self.everyone.copy()
        if self.ids:
            found += self.ids.get(subject.id, ())
        if self.emails and subject.email:
            found += self.emails.get(subject.email.casefold(), ())
        if self.idps and subject.idp_id is not None:
            found += self.idps.get(subject.idp_id, ())
        groups = self.groups
        if groups:
            for group in subject.groups:
                rules = groups.get(group)
                if rules:
                    found += rules
        if self.claims:
            found += self._claim_rules(subject.claims)
        return found

    def _claim_rules(self, claims: Mapping[str, object]) -> list[CompiledRule]:
        found: list[CompiledRule] = []
        for name, by_value in self.claims.items():
            value = claims.get(name)
            for item in value if isinstance(value, (list, tuple)) else (value,):
                rules = by_value.get((item.__class__, item)) if item.__class__ in _SCALARS else None
                if rules:
                    found += rules
        return found


class CompiledPolicy:
    """A policy ready to decide: implements ``Policy``. Immutable once built; safe to share across threads.

    Rules are indexed by target (server id, tag, all) and, per target, by subject key, so a decision
    looks up the request's few subject keys in the index of its one target. The per-target indexes are
    built on first use and memoised (bounded); they are derived data and never change an answer.
    """

    MAX_TARGET_VIEWS = 4096

    def __init__(self, document: PolicyDocument):
        self.document = document
        self.rules = tuple(CompiledRule(rule, n) for n, rule in enumerate(document.rules))
        self._by_server: dict[str, list[CompiledRule]] = {}
        self._by_tag: dict[str, list[CompiledRule]] = {}
        self._all: list[CompiledRule] = []
        self._subjects = _SubjectIndex()
        self._views: dict[tuple[str, frozenset[str], bool], _SubjectIndex] = {}
        for rule in self.rules:
            self._index(rule)

    def _index(self, rule: CompiledRule) -> None:
        targets = rule.rule.targets
        for server in targets.servers:
            self._by_server.setdefault(server, []).append(rule)
        for tag in targets.tags:
            self._by_tag.setdefault(tag, []).append(rule)
        if targets.all:
            self._all.append(rule)
        self._subjects.add(rule)

    def _view(self, target: Target) -> _SubjectIndex:
        """The subject index of the rules covering ``target``."""
        key = (target.id, target.tags, target.builtin)
        view = self._views.get(key)
        if view is None:
            view = _SubjectIndex()
            for rule in self.covering(target):
                view.add(rule)
            if len(self._views) >= self.MAX_TARGET_VIEWS:
                self._views.clear()
            self._views[key] = view
        return view

    def covering(self, target: Target) -> list[CompiledRule]:
        """Rules whose targets cover ``target``, in document order; built-in targets only by id."""
        found = list(self._by_server.get(target.id, ()))
        if not target.builtin:
            for tag in target.tags:
                found += self._by_tag.get(tag, ())
            found += self._all
        return sorted(set(found), key=_order)

    # ---------------------------------------------------------------- deciding

    def decide(self, request: AccessRequest) -> Decision:
        """Decide one request (the ``Policy`` protocol)."""
        return self.evaluate(request.subject, request.target, client_id=request.client_id,
                             requested=request.requested_scopes, now=request.now)

    def evaluate(self, subject: Subject, target: Target, *, client_id: str, requested: frozenset[str] | None,
                 now: dt.datetime, any_client: bool = False, any_login: bool = False) -> Decision:
        """``decide`` with its parts spelled out; simulations may set ``any_client`` / ``any_login``."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)
        matched = [rule for rule in self.candidates(subject, target)
                   if not rule.conditional or rule.holds(client_id, subject, now, any_client, any_login)]
        return _combine(matched, subject, target, requested)

    def needs_step_up(self, request: AccessRequest) -> bool:
        """Whether a stronger sign-in (a rule's ``acr``/``amr``) would turn this denial into an allow."""
        if self.decide(request).allowed:
            return False
        return self.evaluate(request.subject, request.target, client_id=request.client_id,
                             requested=request.requested_scopes, now=request.now, any_login=True).allowed

    def candidates(self, subject: Subject, target: Target) -> list[CompiledRule]:
        """Rules whose subjects and targets match, in document order (conditions not yet checked)."""
        found = self._view(target).match(subject)
        return sorted(set(found), key=_order) if len(found) > 1 else found

    def rules_about(self, subject: Subject) -> set[CompiledRule]:
        """Rules whose subjects match, whatever they target and whatever their conditions."""
        return set(self._subjects.match(subject))

    def group_names(self) -> frozenset[str]:
        """Every group some rule names."""
        return frozenset(self._subjects.groups)

    # ---------------------------------------------------------------- explaining

    def explain(self, request: AccessRequest, *, any_client: bool = False, any_login: bool = False) -> Explanation:
        """Every rule with matched / not matched and why, and the decision they add up to."""
        now = request.now if request.now.tzinfo else request.now.replace(tzinfo=dt.UTC)
        traces = tuple(trace_rule(rule.rule, request.subject, request.client_id, request.target, now,
                                  any_client=any_client, any_login=any_login) for rule in self.rules)
        matched = [rule for rule, trace in zip(self.rules, traces, strict=True) if trace.matched]
        decision = _combine(matched, request.subject, request.target, request.requested_scopes)
        return Explanation(decision, traces)


def compile(document: PolicyDocument) -> CompiledPolicy:
    """Build the indexes for ``document``. Does not validate it (``check_document`` / ``parse_policy`` do)."""
    return CompiledPolicy(document)


def _order(rule: CompiledRule) -> int:
    return rule.order


# -------------------------------------------------------------------- combining matched rules


def _combine(matched: list[CompiledRule], subject: Subject, target: Target,
             requested: frozenset[str] | None) -> Decision:
    ids = tuple([rule.id for rule in matched])
    allows = [rule for rule in matched if not rule.deny]
    if not allows:
        also = f" (only deny rules matched: {', '.join(ids)})" if ids else ""
        return Decision.deny(f"no rule allows {_who(subject)} to reach {target.id}{also}", ids)
    denies = [rule for rule in matched if rule.deny] if len(allows) < len(matched) else []
    whole = [rule.id for rule in denies if rule.scopes is None]
    if whole:
        return Decision.deny(f"{target.id} denied by {', '.join(whole)}", ids)
    allowed: set[str] = set()
    for rule in allows:
        allowed.update(target.scopes if rule.scopes is None else rule.scopes)
    if subject.kind == "client":
        allowed &= subject.client_scopes  # registration is the ceiling for a client acting for itself
    candidate = allowed.intersection(requested or target.default_scopes, target.scopes)
    denied = [rule.scopes for rule in denies if rule.scopes is not None]  # all of them: none denies the whole target
    granted = frozenset(candidate.difference(*denied) if denies else candidate)
    notes = _deny_notes(denies, candidate) if denies else ""
    if not granted:
        wanted = "requested scope" if requested else "default scope"
        return Decision.deny(f"no {wanted} of {target.id} is allowed (allowed by {_ids(allows)}{notes})", ids)
    contributing = allows if len(allows) == 1 else [rule for rule in allows if rule.scopes is None or not
                                                     granted.isdisjoint(rule.scopes)]
    return Decision(True, granted, ids, f"allowed by {_ids(contributing)}{notes}")


def _deny_notes(denies: list[CompiledRule], candidate: set[str]) -> str:
    notes = []
    for rule in denies:
        taken = candidate.intersection(rule.scopes or ())
        if taken:
            notes.append(f"; {_names(taken)} denied by {rule.id}")
    return "".join(notes)


def _ids(rules: Iterable[CompiledRule]) -> str:
    return ", ".join([rule.id for rule in rules])


def _names(scopes: Iterable[str]) -> str:
    return " ".join(sorted(scopes))


def _who(subject: Subject) -> str:
    # a simulated person not known yet has no id (broker.policy.matrix.hypothetical)
    return f"client {subject.id}" if subject.kind == "client" else (subject.email or subject.id or "the person")
