"""Properties over generated policies: the index agrees with a rule-by-rule walk, grants stay inside what
was asked and what the server defines, denies and removed allows only ever shrink access, and the policy
file round-trips exactly."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from broker.policy import (  # noqa: E402
    ALL,
    ClaimMatch,
    Conditions,
    PolicyDocument,
    Rule,
    Subjects,
    Targets,
    check_document,
    compile,
    dump_policy,
    parse_policy,
)
from tests.support.budget import examples  # noqa: E402
from tests.unit.policy.builders import KNOWN, NOW, TARGETS, request, robot, user  # noqa: E402

GROUPS = ["eng", "sales", "ops"]
EMAILS = ["alice@example.com", "bob@example.com"]
IDPS = ["okta", "entra"]
CLIENTS = ["claude", "ci-bot"]
DEPARTMENTS = ["finance", "legal"]
ALL_SCOPES = sorted({scope for target in TARGETS for scope in target.scopes})
INSTANTS = [NOW + dt.timedelta(hours=h) for h in (-48, -1, 0, 1, 48)]
SETTINGS = settings(max_examples=examples(120), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def subsets(items, max_size=2):
    return st.lists(st.sampled_from(items), max_size=max_size, unique=True)


@st.composite
def rules(draw, rule_id):
    subjects = Subjects(users=draw(subsets(EMAILS, 1)), groups=draw(subsets(GROUPS)),
                        claims=tuple(ClaimMatch("department", d) for d in draw(subsets(DEPARTMENTS, 1))),
                        idps=draw(subsets(IDPS, 1)), clients=draw(subsets(CLIENTS, 1)), everyone=draw(st.booleans()))
    targets = Targets(servers=draw(subsets([t.id for t in TARGETS])), tags=draw(subsets(["internal", "code", "docs"])),
                      all=draw(st.booleans()))
    effect = draw(st.sampled_from(["allow", "allow", "allow", "deny"]))  # mostly allows, so grants happen
    scopes = ALL if draw(st.integers(0, 4)) < (3 if effect == "allow" else 1) else draw(subsets(ALL_SCOPES, 4))
    return Rule(id=rule_id, effect=effect, subjects=subjects, targets=targets, scopes=scopes,
                conditions=draw(conditions()) if draw(st.integers(0, 2)) == 0 else Conditions())


@st.composite
def conditions(draw):
    window = sorted(draw(subsets(INSTANTS, 2)))
    return Conditions(clients=draw(subsets(CLIENTS, 1)), acr=draw(subsets(["gold"], 1)),
                      amr=draw(subsets(["mfa", "pwd"], 1)), not_before=window[0] if len(window) > 1 else None,
                      not_after=window[-1] if window else None)


@st.composite
def documents(draw, max_rules=6):
    count = draw(st.integers(0, max_rules))
    return PolicyDocument(tuple(draw(rules(f"r{n}")) for n in range(count)))


@st.composite
def requests(draw):
    if draw(st.integers(0, 4)) == 0:
        subject = robot(draw(st.sampled_from(CLIENTS)), draw(subsets(ALL_SCOPES, 4)))
    else:
        department = draw(st.sampled_from([None, *DEPARTMENTS, ["finance", "hr"]]))
        subject = user(draw(st.sampled_from(["u1", "u2"])), email=draw(st.sampled_from([None, *EMAILS])),
                       groups=draw(subsets(GROUPS, 3)), claims={"department": department} if department else {},
                       idp=draw(st.sampled_from([None, *IDPS])), acr=draw(st.sampled_from([None, "gold"])),
                       amr=draw(subsets(["mfa", "pwd"])))
    target = draw(st.sampled_from(TARGETS))
    requested = draw(st.one_of(st.none(), subsets([*sorted(target.scopes), "bogus", "repo:read"], 3)))
    return request(subject, target, requested, client_id=draw(st.sampled_from(CLIENTS)),
                   now=draw(st.sampled_from(INSTANTS)))


@SETTINGS
@given(documents(), requests())
def test_the_index_agrees_with_the_rule_by_rule_walk(document, req) -> None:
    policy = compile(document)
    assert policy.decide(req) == policy.explain(req).decision


@SETTINGS
@given(documents(), requests())
def test_grants_stay_within_what_was_asked_and_what_the_server_has(document, req) -> None:
    decision = compile(document).decide(req)
    wanted = req.requested_scopes or req.target.default_scopes
    assert decision.scopes <= wanted & req.target.scopes
    if req.subject.kind == "client":
        assert decision.scopes <= req.subject.client_scopes
    assert decision.allowed is bool(decision.scopes)
    assert set(decision.rule_ids) <= {r.id for r in document.rules}
    if not document.rules:
        assert not decision.allowed


@SETTINGS
@given(documents(), rules("extra-deny"), requests())
def test_adding_a_deny_rule_only_shrinks_access(document, extra, req) -> None:
    deny = dataclasses.replace(extra, effect="deny")
    before = compile(document).decide(req)
    after = compile(PolicyDocument((*document.rules, deny))).decide(req)
    assert after.scopes <= before.scopes
    assert before.allowed or not after.allowed


@SETTINGS
@given(documents(), st.data(), requests())
def test_removing_an_allow_rule_only_shrinks_access(document, data, req) -> None:
    allows = [r for r in document.rules if r.effect == "allow"]
    assume(allows)
    gone = data.draw(st.sampled_from(allows))
    before = compile(document).decide(req)
    after = compile(PolicyDocument(tuple(r for r in document.rules if r is not gone))).decide(req)
    assert after.scopes <= before.scopes


names = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != "")
claim_values = st.one_of(st.text(max_size=8), st.integers(-2**63, 2**63 - 1), st.booleans())
instants = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1),
                        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]))


@st.composite
def valid_rules(draw, rule_id):
    targets = Targets(servers=draw(st.lists(st.sampled_from(["demo", "github", "wiki"]), min_size=1, unique=True)))
    offered = sorted({s for t in TARGETS if t.id in targets.servers for s in t.scopes})
    window = sorted(draw(st.lists(instants, max_size=2)))
    return Rule(id=rule_id, effect=draw(st.sampled_from(["allow", "deny"])), description=draw(st.text(max_size=30)),
                subjects=Subjects(users=draw(st.lists(names, max_size=2)), groups=draw(st.lists(names, max_size=3)),
                                  claims=tuple(ClaimMatch(n, v) for n, v in draw(st.lists(st.tuples(
                                      st.text(max_size=10), claim_values), max_size=3))),
                                  idps=draw(st.lists(names, max_size=1)), everyone=True),
                targets=targets, scopes=draw(st.one_of(st.just(ALL), st.lists(st.sampled_from(offered), min_size=1,
                                                                               unique=True))),
                conditions=Conditions(clients=draw(st.lists(names, max_size=2)), amr=draw(st.lists(names, max_size=2)),
                                      not_before=window[0] if window else None,
                                      not_after=window[-1] if len(window) > 1 else None))


@SETTINGS
@given(st.data())
def test_the_policy_file_round_trips_exactly(data) -> None:
    document = PolicyDocument(tuple(data.draw(valid_rules(f"rule-{n}")) for n in range(data.draw(st.integers(0, 3)))))
    assert check_document(document, KNOWN) == []
    text = dump_policy(document)
    assert parse_policy(text, KNOWN) == document
    assert dump_policy(parse_policy(text, KNOWN)) == text
