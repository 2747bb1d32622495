"""Explanations: every rule, matched or not, with the subject, target or condition that decided it."""

from __future__ import annotations

import datetime as dt
import json

from broker.policy import PolicyDocument, compile
from tests.unit.policy.builders import ADMIN_API, DEMO, NOW, request, robot, rule, user

RULES = PolicyDocument((
    rule("engineering-demo", groups=["engineering"], servers=["demo"], scopes=["tools:read", "tools:call"]),
    rule("sales-github", groups=["sales"], servers=["github"], scopes=["repo:read"]),
    rule("mfa-admin", users=["alice@example.com"], servers=["demo"], scopes=["tools:admin"], amr=["mfa"],
         via=["claude"]),
    rule("contractors-read-only", "deny", claims={"employee_type": "contractor"}, all_servers=True,
         scopes=["tools:call"]),
    rule("expired", "allow", everyone=True, tags=["internal"], not_after=NOW - dt.timedelta(days=1)),
))
POLICY = compile(RULES)
ALICE = user(groups={"engineering"}, claims={"employee_type": "contractor"}, amr=["pwd"])


def test_every_rule_is_listed_with_why() -> None:
    explanation = POLICY.explain(request(ALICE, DEMO, {"tools:read", "tools:call", "tools:admin"}))
    traces = {t.rule_id: t for t in explanation.rules}
    assert list(traces) == [r.id for r in RULES.rules]
    assert [t.rule_id for t in explanation.matched] == ["engineering-demo", "contractors-read-only"]
    assert [c.detail for c in traces["engineering-demo"].checks] == ["group engineering", "server demo"]
    assert [(c.aspect, c.detail) for c in traces["sales-github"].failed] == [
        ("subject", "alice@example.com matches none of: groups sales"),
        ("target", "demo is not among: servers github")]
    assert [(c.aspect, c.ok, c.detail) for c in traces["mfa-admin"].checks] == [
        ("subject", True, "user alice@example.com"), ("target", True, "server demo"),
        ("condition", True, "client claude is one of claude"), ("condition", False, "amr pwd has none of mfa")]
    assert traces["contractors-read-only"].checks[0].detail == 'claim employee_type = "contractor"'
    assert traces["expired"].failed[0].detail == "expired after 2026-05-31T12:00:00Z"


def test_the_explanation_carries_the_same_decision_as_decide() -> None:
    req = request(ALICE, DEMO, {"tools:read", "tools:call", "tools:admin"})
    explanation = POLICY.explain(req)
    assert explanation.decision == POLICY.decide(req)
    assert explanation.decision.reason == "allowed by engineering-demo; tools:call denied by contractors-read-only"


def test_render_reads_as_a_report() -> None:
    text = POLICY.explain(request(ALICE, DEMO, {"tools:read", "tools:call"})).render()
    assert text.splitlines() == [
        "allowed: tools:read (allowed by engineering-demo; tools:call denied by contractors-read-only)",
        "rules: 2 of 5 matched",
        "  [match] engineering-demo (allow): subject: group engineering; target: server demo",
        "  [  -  ] sales-github (allow): subject: alice@example.com matches none of: groups sales; "
        "target: demo is not among: servers github",
        "  [  -  ] mfa-admin (allow): condition: amr pwd has none of mfa",
        "  [match] contractors-read-only (deny): subject: claim employee_type = \"contractor\"; target: all servers",
        "  [  -  ] expired (allow): condition: expired after 2026-05-31T12:00:00Z",
    ]


def test_a_denial_is_explained_too() -> None:
    bob = user("u-bob", email="bob@example.com", groups={"sales"})
    explanation = POLICY.explain(request(bob, DEMO, None))
    assert not explanation.decision.allowed and explanation.matched == ()
    assert explanation.render().startswith("denied (no rule allows bob@example.com to reach demo)")


def test_clients_and_builtin_targets_say_why_they_do_not_match() -> None:
    policy = compile(PolicyDocument((rule("everything", everyone=True, all_servers=True),)))
    (trace,) = policy.explain(request(robot(scopes=["admin:read"]), ADMIN_API, {"admin:read"})).rules
    assert [c.detail for c in trace.failed] == [
        "client ci-bot is not named in subjects.clients (clients acting for themselves match only rules that "
        "name them)",
        "broker-admin-api is built in: only rules naming it in targets.servers cover it"]


def test_simulated_logins_are_marked_as_assumed() -> None:
    explanation = POLICY.explain(request(ALICE, DEMO, {"tools:admin"}, client_id=""), any_client=True,
                                 any_login=True)
    trace = next(t for t in explanation.rules if t.rule_id == "mfa-admin")
    assert [c.detail for c in trace.checks[2:]] == ["client assumed is one of claude", "amr assumed has mfa"]
    assert explanation.decision.scopes == {"tools:admin"}


def test_the_explanation_serialises_to_json() -> None:
    data = json.loads(json.dumps(POLICY.explain(request(ALICE, DEMO, {"tools:read"})).to_dict()))
    assert data["allowed"] is True and data["scopes"] == ["tools:read"]
    assert data["rule_ids"] == ["engineering-demo", "contractors-read-only"]
    assert data["rules"][0] == {"id": "engineering-demo", "effect": "allow", "description": "", "matched": True,
                                "checks": [{"aspect": "subject", "ok": True, "detail": "group engineering"},
                                           {"aspect": "target", "ok": True, "detail": "server demo"}]}
