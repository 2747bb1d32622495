"""Properties of policy decisions over generated rule sets (docs/policy.md, "How a decision is made").

Rules here have no conditions, so "matches" is only subjects (users, groups, everyone) and targets
(servers, tags, all; the built-in admin API only by id). ``_matching`` spells that out as the oracle.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from broker.policy import ALL, PolicyDocument, Rule, Subject, Target, compile
from tests.support.budget import examples
from tests.unit.policy.builders import ADMIN_API, DEMO, GITHUB, TARGETS, decide, request, rule, user

SETTINGS = settings(max_examples=examples(150), derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

GROUPS = ["eng", "sales", "ops", "contractors"]
EMAILS = ["alice@example.com", "bob@example.com"]
TAGS = ["internal", "code", "docs"]
SCOPES = sorted({s for t in TARGETS for s in t.scopes} | {"bogus:scope"})


def some(items, max_size=2):
    return st.lists(st.sampled_from(items), max_size=max_size, unique=True)


@st.composite
def rules(draw, rule_id: str, effect: str | None = None) -> Rule:
    effect = effect or draw(st.sampled_from(["allow", "allow", "deny"]))
    everyone = draw(st.integers(0, 3)) == 0
    users, groups = draw(some(EMAILS, 1)), draw(some(GROUPS))
    if not (everyone or users or groups):
        groups = [draw(st.sampled_from(GROUPS))]
    all_servers = draw(st.integers(0, 3)) == 0
    servers, tags = draw(some([t.id for t in TARGETS])), draw(some(TAGS))
    if not (all_servers or servers or tags):
        servers = [draw(st.sampled_from([t.id for t in TARGETS]))]
    wildcard = draw(st.integers(0, 3)) < (2 if effect == "allow" else 1)
    scopes = ALL if wildcard else draw(st.lists(st.sampled_from(SCOPES), min_size=1, max_size=4, unique=True))
    return rule(rule_id, effect, scopes=scopes, users=users, groups=groups, everyone=everyone, servers=servers,
                tags=tags, all_servers=all_servers)


@st.composite
def rule_sets(draw, max_rules: int = 6) -> list[Rule]:
    return [draw(rules(f"r{n}")) for n in range(draw(st.integers(0, max_rules)))]


subjects = st.builds(lambda uid, email, groups: user(uid, email=email, groups=groups),
                     st.sampled_from(["u1", "u2"]), st.sampled_from([None, *EMAILS]), some(GROUPS, 4))
targets = st.sampled_from(TARGETS)
requested = st.one_of(st.none(), st.lists(st.sampled_from(SCOPES), min_size=1, max_size=4, unique=True))


def _matching(rules_: list[Rule], subject: Subject, target: Target) -> list[Rule]:
    """Rules whose subjects and targets match (docs/policy.md, "Subjects" and "Targets")."""
    def subject_matches(r: Rule) -> bool:
        s = r.subjects
        return s.everyone or subject.id in s.users or bool(subject.groups & set(s.groups)) or \
            (subject.email is not None and subject.email.casefold() in {u.casefold() for u in s.users})

    def target_matches(r: Rule) -> bool:
        t = r.targets
        return target.id in t.servers or (not target.builtin and (t.all or bool(target.tags & set(t.tags))))

    return [r for r in rules_ if subject_matches(r) and target_matches(r)]


def _scopes(r: Rule, target: Target) -> frozenset[str]:
    return target.scopes if r.scopes == ALL else frozenset(r.scopes)


@SETTINGS
@given(rule_sets(), subjects, targets, requested, st.data())
def test_a_matching_whole_server_deny_always_denies(rules_, subject, target, wanted, data) -> None:
    """Rule 2, deny overrides allow: a matching deny rule with ``scopes = "*"`` denies the server outright."""
    by = data.draw(st.sampled_from(["everyone", "group", "user"]))
    assume(by != "group" or subject.groups)
    assume(by != "user" or subject.email)
    deny = rule("whole", "deny", scopes=ALL, everyone=by == "everyone",
                groups=sorted(subject.groups)[:1] if by == "group" else (),
                users=[subject.email.upper()] if by == "user" else (),  # emails match case-insensitively
                servers=[target.id])
    rules_ = [*rules_, deny]
    rules_ = data.draw(st.permutations(rules_))
    assert deny in _matching(rules_, subject, target)
    decision = decide(rules_, subject, target, wanted)
    assert not decision.allowed and decision.scopes == frozenset()


@SETTINGS
@given(rule_sets(), subjects, targets, requested)
@example([rule("a", scopes=ALL, everyone=True, all_servers=True),
          rule("d", "deny", scopes=["tools:call"], groups=["contractors"], servers=["demo"])],
         user("u1", groups=["contractors"]), DEMO, ["tools:read", "tools:call"])
def test_granted_scopes_are_exactly_the_documented_formula(rules_, subject, target, wanted) -> None:
    """Rule 3: granted = wanted ∩ (∪ matching allows) − (∪ matching denies), never a scope the server lacks;
    wanted is the request, or the server's default scopes when none were asked for. Rule 4: empty is a denial."""
    matching = _matching(rules_, subject, target)
    allows = [r for r in matching if r.effect == "allow"]
    denies = [r for r in matching if r.effect == "deny"]
    allowed = frozenset().union(*[_scopes(r, target) for r in allows])
    denied = frozenset().union(*[_scopes(r, target) for r in denies])
    want = frozenset(wanted) if wanted else target.default_scopes
    decision = decide(rules_, subject, target, wanted)
    assert decision.scopes <= target.scopes
    assert decision.scopes <= allowed - denied
    if not any(r.scopes == ALL for r in denies):
        assert decision.scopes == (want & allowed & target.scopes) - denied
    assert decision.allowed is bool(decision.scopes)


@SETTINGS
@given(rule_sets(), subjects, targets, requested)
def test_no_matching_allow_rule_denies(rules_, subject, target, wanted) -> None:
    """Rule 1, default deny: no matching allow rule (an empty policy included) and the request is denied."""
    assume(not any(r.effect == "allow" for r in _matching(rules_, subject, target)))
    assert not decide(rules_, subject, target, wanted).allowed


@SETTINGS
@given(rule_sets(), subjects, targets, st.lists(st.sampled_from(SCOPES), min_size=1, max_size=4, unique=True))
def test_the_grant_never_exceeds_the_request(rules_, subject, target, wanted) -> None:
    """Rule 3, wanted = the scopes the client asked for: a grant is always within a non-empty request."""
    assert decide(rules_, subject, target, wanted).scopes <= frozenset(wanted)


@SETTINGS
@given(rule_sets(), subjects, targets, requested)
def test_rule_order_never_matters(rules_, subject, target, wanted) -> None:
    """"Rule order never matters": the reversed rule list decides the same scopes."""
    assert decide(rules_, subject, target, wanted).scopes == decide(rules_[::-1], subject, target, wanted).scopes


@SETTINGS
@given(rule_sets(), rules("extra", "deny"), subjects, targets, requested)
def test_adding_a_deny_rule_never_grants_more(rules_, deny, subject, target, wanted) -> None:
    """Rules 2-3 (scopes can only shrink): a deny rule only ever takes scopes away."""
    before = decide(rules_, subject, target, wanted)
    after = decide([*rules_, deny], subject, target, wanted)
    assert after.scopes <= before.scopes and (before.allowed or not after.allowed)


@SETTINGS
@given(rule_sets(), subjects, targets, requested, st.data())
def test_removing_an_allow_rule_never_grants_more(rules_, subject, target, wanted, data) -> None:
    """Rule 3 (scopes can only shrink): the union of allows only loses scopes when an allow rule goes."""
    allows = [r for r in rules_ if r.effect == "allow"]
    assume(allows)
    gone = data.draw(st.sampled_from(allows))
    after = decide([r for r in rules_ if r is not gone], subject, target, wanted)
    assert after.scopes <= decide(rules_, subject, target, wanted).scopes


@SETTINGS
@given(rule_sets(), subjects, targets, requested, st.data())
def test_leaving_a_group_never_grants_more_unless_a_deny_named_it(rules_, subject, target, wanted, data) -> None:
    """Subjects match by group, so leaving a group loses the allows that named it. Deny rules subtract for
    their own subjects (rule 3), so leaving a group a deny rule names may legitimately give scopes back:
    the property holds for groups no deny rule names (see the next test for the other case)."""
    assume(subject.groups)
    group = data.draw(st.sampled_from(sorted(subject.groups)))
    assume(not any(r.effect == "deny" and group in r.subjects.groups for r in rules_))
    fewer = dataclasses.replace(subject, groups=subject.groups - {group})
    assert decide(rules_, fewer, target, wanted).scopes <= decide(rules_, subject, target, wanted).scopes


def test_leaving_a_denied_group_gives_its_scopes_back() -> None:
    """Documented, not a bug: "Contractors never call tools" stops applying to someone who is no longer one.
    (So "scopes only shrink" at refresh must come from the refresh grant bounding by the original grant.)"""
    rules_ = [rule("eng", scopes=ALL, everyone=True, servers=["demo"]),
              rule("no-tools", "deny", scopes=["tools:call"], groups=["contractors"], servers=["demo"])]
    asked = ["tools:read", "tools:call"]
    assert decide(rules_, user(groups=["contractors"]), DEMO, asked).scopes == {"tools:read"}
    assert decide(rules_, user(groups=[]), DEMO, asked).scopes == {"tools:read", "tools:call"}


@SETTINGS
@given(rule_sets(), subjects, requested)
def test_the_admin_api_is_reached_only_by_rules_naming_it(rules_, subject, wanted) -> None:
    """Targets: ``broker-admin-api`` is covered only by rules naming it in ``servers``; ``all`` and tags never."""
    named = [r for r in rules_ if ADMIN_API.id not in r.targets.servers]
    assert not decide(named, subject, ADMIN_API, wanted).allowed


@SETTINGS
@given(rule_sets(), subjects, st.sampled_from([DEMO, GITHUB]), requested)
def test_the_compiled_index_agrees_with_explain(rules_, subject, target, wanted) -> None:
    """``decide`` (indexed) and ``explain`` (rule by rule) reach the same decision for every request."""
    policy = compile(PolicyDocument(tuple(rules_)))
    req = request(subject, target, wanted)
    assert policy.decide(req) == policy.explain(req).decision
