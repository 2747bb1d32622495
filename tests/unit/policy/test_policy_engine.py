"""The evaluator: deny overrides allow, default deny, scope arithmetic, every selector and condition."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from broker.policy import ALL, Policy, PolicyDocument, Subject, Target, compile
from tests.unit.policy.builders import ADMIN_API, DEMO, GITHUB, WIKI, decide, request, robot, rule, user

ENG = user(groups={"engineering"})
SALES = user("u-bob", email="bob@example.com", groups={"sales"})
ENG_DEMO = rule("engineering-demo", groups=["engineering"], servers=["demo"], scopes=["tools:read", "tools:call"])
NO_CALL = rule("no-call", "deny", groups=["engineering"], servers=["demo"], scopes=["tools:call"])
TICK = dt.timedelta(microseconds=1)  # the smallest step a datetime takes

# (rules, subject, target, requested, granted or None for a denial, matched rule ids)
SCOPE_CASES = {
    "empty rule set denies": ([], ENG, DEMO, None, None, ()),
    "no matching allow denies": ([ENG_DEMO], SALES, DEMO, None, None, ()),
    "allow for another server denies": ([ENG_DEMO], ENG, GITHUB, None, None, ()),
    "requested within allowed": ([ENG_DEMO], ENG, DEMO, {"tools:call"}, {"tools:call"}, ("engineering-demo",)),
    "requested intersect allowed": ([ENG_DEMO], ENG, DEMO, {"tools:call", "tools:admin"}, {"tools:call"},
                                    ("engineering-demo",)),
    "requested only outside allowed denies": ([ENG_DEMO], ENG, DEMO, {"tools:admin"}, None, ("engineering-demo",)),
    "no scope requested: defaults within allowed": ([ENG_DEMO], ENG, DEMO, None, {"tools:read"},
                                                    ("engineering-demo",)),
    "empty request counts as none": ([ENG_DEMO], ENG, DEMO, set(), {"tools:read"}, ("engineering-demo",)),
    "defaults outside allowed deny": ([rule("call", groups=["engineering"], servers=["demo"], scopes=["tools:call"])],
                                      ENG, DEMO, None, None, ("call",)),
    "server without defaults: none requested denies": ([rule("w", everyone=True, servers=["wiki"])], ENG, WIKI,
                                                        None, None, ("w",)),
    "star grants every scope of the server": ([rule("all", groups=["engineering"], servers=["demo"])], ENG, DEMO,
                                              {"tools:admin", "tools:read", "unknown"}, {"tools:admin", "tools:read"},
                                              ("all",)),
    "allows add up": ([ENG_DEMO, rule("admin", users=["alice@example.com"], servers=["demo"], scopes=["tools:admin"])],
                      ENG, DEMO, {"tools:read", "tools:admin"}, {"tools:read", "tools:admin"},
                      ("engineering-demo", "admin")),
    "deny takes scopes away": ([ENG_DEMO, NO_CALL], ENG, DEMO, {"tools:read", "tools:call"}, {"tools:read"},
                               ("engineering-demo", "no-call")),
    "deny of every requested scope denies": ([ENG_DEMO, NO_CALL], ENG, DEMO, {"tools:call"}, None,
                                             ("engineering-demo", "no-call")),
    "deny of other scopes changes nothing": ([ENG_DEMO, NO_CALL], ENG, DEMO, {"tools:read"}, {"tools:read"},
                                             ("engineering-demo", "no-call")),
    "deny star denies the server outright": ([ENG_DEMO, rule("freeze", "deny", everyone=True, servers=["demo"])],
                                             ENG, DEMO, {"tools:read"}, None, ("engineering-demo", "freeze")),
    "deny is not an allow": ([NO_CALL], ENG, DEMO, {"tools:read"}, None, ("no-call",)),
    "deny wins whatever the order": ([NO_CALL, ENG_DEMO], ENG, DEMO, {"tools:call"}, None,
                                     ("no-call", "engineering-demo")),
}


@pytest.mark.parametrize("rules,subject,target,requested,granted,matched", SCOPE_CASES.values(), ids=SCOPE_CASES)
def test_scope_arithmetic(rules, subject, target, requested, granted, matched) -> None:
    decision = decide(rules, subject, target, requested)
    assert decision.allowed is (granted is not None)
    assert decision.scopes == frozenset(granted or ())
    assert decision.rule_ids == matched
    assert decision.reason


# subject selectors: (rule, subject, matches?)
SUBJECT_CASES = {
    "user by email": (rule("r", users=["alice@example.com"], servers=["demo"]), user(), True),
    "user email is case-insensitive": (rule("r", users=["Alice@Example.COM"], servers=["demo"]), user(), True),
    "user by id": (rule("r", users=["u-alice"], servers=["demo"]), user(email=None), True),
    "other user": (rule("r", users=["bob@example.com"], servers=["demo"]), user(), False),
    "group": (rule("r", groups=["engineering", "ops"], servers=["demo"]), user(groups={"ops"}), True),
    "not in group": (rule("r", groups=["engineering"], servers=["demo"]), user(groups={"sales"}), False),
    "claim equals": (rule("r", claims={"department": "finance"}, servers=["demo"]),
                     user(claims={"department": "finance"}), True),
    "claim differs": (rule("r", claims={"department": "finance"}, servers=["demo"]),
                      user(claims={"department": "legal"}), False),
    "claim missing": (rule("r", claims={"department": "finance"}, servers=["demo"]), user(), False),
    "list claim contains": (rule("r", claims={"roles": "auditor"}, servers=["demo"]),
                            user(claims={"roles": ["dev", "auditor"]}), True),
    "list claim lacks": (rule("r", claims={"roles": "auditor"}, servers=["demo"]), user(claims={"roles": ["dev"]}),
                         False),
    "any of several claim values": (rule("r", claims={"department": ["finance", "legal"]}, servers=["demo"]),
                                    user(claims={"department": "legal"}), True),
    "boolean claim": (rule("r", claims={"contractor": True}, servers=["demo"]), user(claims={"contractor": True}),
                      True),
    "claims compare type-strictly (true is not 1)": (rule("r", claims={"level": 1}, servers=["demo"]),
                                                     user(claims={"level": True}), False),
    "claims compare type-strictly (true is not 'true')": (rule("r", claims={"contractor": True}, servers=["demo"]),
                                                          user(claims={"contractor": "true"}), False),
    "unhashable claim values are ignored": (rule("r", claims={"x": "a"}, servers=["demo"]),
                                            user(claims={"x": {"a": 1}}), False),
    "idp": (rule("r", idps=["okta"], servers=["demo"]), user(idp="okta"), True),
    "other idp": (rule("r", idps=["entra"], servers=["demo"]), user(idp="okta"), False),
    "everyone": (rule("r", everyone=True, servers=["demo"]), user(email=None, idp=None), True),
    "clients never match everyone": (rule("r", everyone=True, servers=["demo"]), robot(scopes=["tools:read"]), False),
    "clients never match groups or users": (rule("r", users=["ci-bot"], groups=["ci-bot"], servers=["demo"]),
                                            robot(scopes=["tools:read"]), False),
    "client named as subject": (rule("r", clients=["ci-bot"], servers=["demo"]), robot(scopes=["tools:read"]), True),
    "users never match client rules": (rule("r", clients=["ci-bot"], servers=["demo"]), user("ci-bot"), False),
}


@pytest.mark.parametrize("the_rule,subject,matches", SUBJECT_CASES.values(), ids=SUBJECT_CASES)
def test_subject_selectors(the_rule, subject, matches) -> None:
    decision = decide([the_rule], subject, DEMO, {"tools:read"})
    assert decision.allowed is matches
    assert decision.rule_ids == (("r",) if matches else ())


TARGET_CASES = {
    "server id": (rule("r", everyone=True, servers=["demo"]), DEMO, True),
    "other server id": (rule("r", everyone=True, servers=["github"]), DEMO, False),
    "tag": (rule("r", everyone=True, tags=["code"]), GITHUB, True),
    "other tag": (rule("r", everyone=True, tags=["code"]), DEMO, False),
    "all": (rule("r", everyone=True, all_servers=True), WIKI, True),
    "all does not cover the built-in admin API": (rule("r", clients=["ci-bot"], all_servers=True), ADMIN_API, False),
    "tags do not cover a built-in target": (rule("r", clients=["ci-bot"], tags=["admin"]),
                                            dataclasses.replace(ADMIN_API, tags=frozenset({"admin"})), False),
    "the built-in target named by id": (rule("r", clients=["ci-bot"], servers=["broker-admin-api"]), ADMIN_API, True),
}


@pytest.mark.parametrize("the_rule,target,matches", TARGET_CASES.values(), ids=TARGET_CASES)
def test_target_selectors(the_rule, target, matches) -> None:
    subject = robot(scopes=target.scopes) if the_rule.subjects.clients else user()
    assert decide([the_rule], subject, target, target.scopes).allowed is matches


def test_users_reach_the_admin_api_only_through_a_rule_naming_it() -> None:
    broad = [rule("everything", everyone=True, all_servers=True), rule("tagged", everyone=True, tags=["internal"])]
    assert not decide(broad, user(), ADMIN_API, {"admin:read"}).allowed
    named = rule("it-admins-api", groups=["it-admins"], servers=["broker-admin-api"], scopes=["admin:read"])
    assert decide([*broad, named], user(groups={"it-admins"}), ADMIN_API, {"admin:read"}).scopes == {"admin:read"}


def test_a_client_gets_at_most_its_registered_scopes() -> None:
    grant = rule("bot", clients=["ci-bot"], servers=["broker-admin-api"])
    assert decide([grant], robot(scopes=["admin:read"]), ADMIN_API, {"admin:read", "admin:write"}).scopes == \
        {"admin:read"}
    assert not decide([grant], robot(scopes=[]), ADMIN_API, {"admin:read"}).allowed


ACR_AMR = [rule("strong", everyone=True, servers=["demo"], acr=["urn:okta:loa:2fa"], amr=["mfa", "hwk"])]
CONDITION_CASES = {
    "client on the allow-list": ([rule("r", everyone=True, servers=["demo"], via=["claude", "codex"])], user(),
                                 "claude", True),
    "client off the allow-list": ([rule("r", everyone=True, servers=["demo"], via=["codex"])], user(), "claude",
                                  False),
    "acr required and present": ([rule("r", everyone=True, servers=["demo"], acr=["gold"])], user(acr="gold"),
                                 "claude", True),
    "acr required and different": ([rule("r", everyone=True, servers=["demo"], acr=["gold"])], user(acr="silver"),
                                   "claude", False),
    "acr required and absent": ([rule("r", everyone=True, servers=["demo"], acr=["gold"])], user(), "claude", False),
    "amr contains one of": ([rule("r", everyone=True, servers=["demo"], amr=["mfa", "hwk"])],
                            user(amr=["pwd", "mfa"]), "claude", True),
    "amr contains none of": ([rule("r", everyone=True, servers=["demo"], amr=["mfa"])], user(amr=["pwd"]), "claude",
                             False),
    "acr and amr both listed: both must hold": (ACR_AMR, user(acr="urn:okta:loa:2fa", amr=["pwd"]), "claude", False),
    "acr and amr both hold": (ACR_AMR, user(acr="urn:okta:loa:2fa", amr=["hwk"]), "claude", True),
}


@pytest.mark.parametrize("rules,subject,client_id,matches", CONDITION_CASES.values(), ids=CONDITION_CASES)
def test_conditions(rules, subject, client_id, matches) -> None:
    assert decide(rules, subject, DEMO, {"tools:read"}, client_id=client_id).allowed is matches


START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
WINDOW = rule("june", everyone=True, servers=["demo"], not_before=START, not_after=END)


@pytest.mark.parametrize("now,matches", [
    (START - TICK, False), (START, True), (START + TICK, True), (END - TICK, True), (END, True),
    (END + TICK, False), (START.replace(tzinfo=None), True), (START.astimezone(dt.timezone(dt.timedelta(hours=2))),
                                                                True),
], ids=["before", "at not_before", "after not_before", "before not_after", "at not_after", "after not_after",
        "naive now is UTC", "other offset"])
def test_validity_window_boundaries_are_inclusive(now, matches) -> None:
    assert decide([WINDOW], user(), DEMO, {"tools:read"}, now=now).allowed is matches


def test_a_deny_with_a_window_applies_only_inside_it() -> None:
    freeze = rule("change-freeze", "deny", everyone=True, servers=["demo"], scopes=["tools:call"],
                  not_before=START, not_after=END)
    rules = [rule("r", everyone=True, servers=["demo"]), freeze]
    assert decide(rules, user(), DEMO, {"tools:call"}, now=START).allowed is False
    assert decide(rules, user(), DEMO, {"tools:call"}, now=END + TICK).scopes == {"tools:call"}


def test_reasons_name_the_rules() -> None:
    allowed = decide([ENG_DEMO, NO_CALL], ENG, DEMO, {"tools:read", "tools:call"})
    assert allowed.reason == "allowed by engineering-demo; tools:call denied by no-call"
    denied = decide([ENG_DEMO], SALES, DEMO, {"tools:read"})
    assert denied.reason == "no rule allows bob@example.com to reach demo"
    outright = decide([ENG_DEMO, rule("freeze", "deny", everyone=True, servers=["demo"])], ENG, DEMO, None)
    assert outright.reason == "demo denied by freeze"
    nothing_left = decide([ENG_DEMO, NO_CALL], ENG, DEMO, {"tools:call"})
    assert nothing_left.reason == "no requested scope of demo is allowed (allowed by engineering-demo; tools:call " \
                                  "denied by no-call)"


def test_rule_ids_come_in_document_order_once_each() -> None:
    rules = [rule("c", everyone=True, servers=["demo"]), rule("a", groups=["engineering"], users=["u-alice"],
                                                              tags=["internal"], servers=["demo"]),
             rule("b", "deny", everyone=True, servers=["demo"], scopes=["tools:admin"])]
    assert decide(rules, ENG, DEMO, {"tools:read"}).rule_ids == ("c", "a", "b")


def test_a_targets_tags_are_part_of_its_identity() -> None:
    """The per-target index is memoised; a server retagged between requests must not reuse the old one."""
    policy = compile(PolicyDocument((rule("code", everyone=True, tags=["code"]),)))
    assert policy.decide(request(user(), GITHUB, {"repo:read"})).allowed
    retagged = dataclasses.replace(GITHUB, tags=frozenset({"internal"}))
    assert not policy.decide(request(user(), retagged, {"repo:read"})).allowed


def test_an_unknown_subject_kind_is_denied() -> None:
    stranger = Subject(kind="robot", id="x")  # type: ignore[arg-type]
    assert not decide([rule("r", everyone=True, all_servers=True)], stranger, DEMO, None).allowed


def test_compiled_policy_is_a_policy() -> None:
    policy: Policy = compile(PolicyDocument())
    decision = policy.decide(request(user(), DEMO, None))
    assert not decision.allowed and decision.rule_ids == ()


def test_a_rule_with_an_empty_part_never_matches() -> None:
    half_rules = [rule("no-subjects", servers=["demo"]), rule("no-targets", everyone=True),
                  rule("no-scopes", everyone=True, servers=["demo"], scopes=[])]
    assert decide(half_rules, ENG, DEMO, {"tools:read"}).allowed is False


@pytest.mark.parametrize("target", [DEMO, GITHUB, WIKI, Target("bare", frozenset({"x"}), frozenset({"x"}))])
def test_granted_scopes_are_the_servers_own(target) -> None:
    decision = decide([rule("r", everyone=True, all_servers=True, scopes=ALL)], user(), target,
                      {"x", "tools:read", "repo:write", "nope"})
    assert decision.scopes <= target.scopes


def test_decisions_at_scale_use_the_index() -> None:
    groups = [f"g{n}" for n in range(300)]
    rules = [rule(f"r{n}", groups=[groups[n % 300]], servers=["demo" if n % 2 else "github"], scopes=ALL)
             for n in range(3000)]
    policy = compile(PolicyDocument(tuple(rules)))
    subject = user(groups={"g1", "g2"})
    assert len(policy.candidates(subject, DEMO)) == 10  # g1's rules on demo (odd n); g2's are on github
    assert policy.decide(request(subject, DEMO, None)).scopes == {"tools:read"}
