"""The access matrix, the subjects a policy change touches, and subjects the broker does not know yet."""

from __future__ import annotations

import dataclasses

import pytest

from broker.policy import (
    PolicyDocument,
    UserFacts,
    access_matrix,
    compile,
    diff_subjects,
    hypothetical,
    parse_claims,
    subject_rows,
    user_row,
)
from tests.unit.policy.builders import DEMO, GITHUB, NOW, WIKI, request, rule

POLICY = PolicyDocument((
    rule("engineering-demo", groups=["engineering"], servers=["demo"], scopes=["tools:read", "tools:call"]),
    rule("contractors-read-only", "deny", claims={"employee_type": "contractor"}, all_servers=True,
         scopes=["tools:call", "repo:write"]),
    rule("sales-mfa", groups=["sales"], servers=["demo"], scopes=["tools:admin"], amr=["mfa"]),
    rule("wiki-for-all", everyone=True, servers=["wiki"], scopes=["pages:read"]),
    rule("okta-github", idps=["okta"], servers=["github"], scopes=["repo:read"]),
    rule("github-incident", "deny", groups=["interns"], servers=["github"]),
))


def cells_by_label(matrix):
    return {(row.label, server.id): cell for row, cells in zip(matrix.rows, matrix.cells, strict=True)
            for server, cell in zip(matrix.servers, cells, strict=True)}


def test_rows_are_everyone_then_every_group_claim_and_idp_the_rules_name_plus_known_groups() -> None:
    rows = subject_rows(POLICY, groups=["support"])
    assert [(r.kind, r.label) for r in rows] == [
        ("everyone", "everyone"), ("group", "engineering"), ("group", "interns"), ("group", "sales"),
        ("group", "support"), ("claim", 'claim employee_type = "contractor"'), ("idp", "IdP okta")]


def test_each_cell_holds_the_scopes_and_the_rules_that_decide_them() -> None:
    matrix = access_matrix(compile(POLICY), [DEMO, GITHUB, WIKI], subject_rows(POLICY), now=NOW)
    cells = cells_by_label(matrix)
    engineering = cells[("engineering", "demo")]
    assert engineering.state == "allowed" and engineering.scopes == {"tools:read", "tools:call"}
    assert engineering.allowed_by == ("engineering-demo",) and engineering.denied_by == ()
    assert cells[("engineering", "wiki")].scopes == {"pages:read"}  # everyone's rule reaches members too
    assert cells[("engineering", "github")].state == "none" and cells[("engineering", "github")].rule_ids == ()
    sales = cells[("sales", "demo")]
    assert sales.scopes == {"tools:admin"} and sales.conditional == ("sales-mfa",)  # assumed: an MFA login
    assert cells[("IdP okta", "github")].summary() == "repo:read"


def test_denials_are_visible_as_such_with_the_deny_rule() -> None:
    cells = cells_by_label(access_matrix(compile(POLICY), [DEMO, GITHUB], subject_rows(POLICY), now=NOW))
    interns = cells[("interns", "github")]
    assert interns.state == "denied" and interns.denied_by == ("github-incident",)
    assert interns.summary() == "everything denied by github-incident"
    contractor = cells[('claim employee_type = "contractor"', "github")]
    assert contractor.state == "denied" and contractor.allowed_by == ()
    assert cells[("everyone", "demo")].state == "none" and cells[("everyone", "demo")].summary() == "no rule allows"


def test_a_partly_denied_cell_names_the_scopes_withheld() -> None:
    document = PolicyDocument((*POLICY.rules, rule("contractor-demo", claims={"employee_type": "contractor"},
                                                   servers=["demo"], scopes=["tools:read", "tools:call"])))
    cells = cells_by_label(access_matrix(compile(document), [DEMO], subject_rows(document), now=NOW))
    cell = cells[('claim employee_type = "contractor"', "demo")]
    assert cell.state == "allowed" and cell.scopes == {"tools:read"} and cell.withheld == {"tools:call"}
    assert cell.summary() == "tools:read; tools:call denied by contractors-read-only"


def test_cells_agree_with_decide_for_a_real_user() -> None:
    carol = UserFacts("u-carol", "carol@example.com", "okta", frozenset({"engineering", "interns"}),
                      {"employee_type": "contractor"})
    policy = compile(POLICY)
    matrix = access_matrix(policy, [DEMO, GITHUB, WIKI], [user_row(carol, "Carol")], now=NOW)
    assert matrix.rows[0].label == "Carol <carol@example.com>"
    for server, cell in zip(matrix.servers, matrix.cells[0], strict=True):
        decision = policy.decide(request(carol.subject(amr=["mfa"]), server, server.scopes))
        assert cell.scopes == (decision.scopes if decision.allowed else frozenset()), server.id


def test_an_offboarded_user_reaches_nothing_whatever_the_policy_says() -> None:
    alice = UserFacts("u-alice", "alice@example.com", "okta", frozenset({"engineering"}))
    matrix = access_matrix(compile(POLICY), [DEMO], [user_row(alice, offboarded=True)], now=NOW)
    cell = matrix.cells[0][0]
    assert cell.state == "offboarded" and cell.scopes == frozenset() and cell.allowed_by == ("engineering-demo",)


def test_csv_rows_have_one_line_per_subject_and_server() -> None:
    matrix = access_matrix(compile(POLICY), [DEMO, WIKI], subject_rows(POLICY)[:2], now=NOW)
    rows = matrix.csv_rows()
    assert rows[0][:5] == ["kind", "subject", "server", "state", "scopes"]
    assert rows[1:] == [
        ["everyone", "everyone", "demo", "none", "", "", "", "", ""],
        ["everyone", "everyone", "wiki", "allowed", "pages:read", "wiki-for-all", "", "", ""],
        ["group", "engineering", "demo", "allowed", "tools:call tools:read", "engineering-demo", "", "", ""],
        ["group", "engineering", "wiki", "allowed", "pages:read", "wiki-for-all", "", "", ""]]


def test_diff_subjects_names_the_groups_that_gain_or_lose_without_any_user() -> None:
    new = PolicyDocument((
        dataclasses.replace(POLICY.rules[0], scopes=("tools:read",)), *POLICY.rules[1:3],
        rule("sales-github", groups=["sales"], servers=["github"], scopes=["repo:read"]),
        rule("wiki-for-all", everyone=True, servers=["wiki"], scopes=["pages:read", "pages:write"]),
        *POLICY.rules[4:]))
    rows = subject_rows(POLICY) + [r for r in subject_rows(new) if r not in subject_rows(POLICY)]
    changes = diff_subjects(compile(POLICY), compile(new), [DEMO, GITHUB, WIKI], rows, now=NOW)
    assert [c.render() for c in changes] == [
        "everyone changes wiki: +pages:write",
        "group engineering changes demo: -tools:call",
        "group sales gains github: +repo:read",
    ]  # the other groups follow everyone's change on wiki, so they are not repeated


def test_diff_subjects_reports_a_group_whose_change_differs_from_everyones() -> None:
    new = PolicyDocument((*POLICY.rules, rule("no-wiki-for-interns", "deny", groups=["interns"], servers=["wiki"])))
    changes = diff_subjects(compile(POLICY), compile(new), [WIKI], subject_rows(new), now=NOW)
    assert [c.render() for c in changes] == ["group interns loses wiki: -pages:read"]


def test_a_hypothetical_new_hire_is_decided_like_a_known_user_with_the_same_facts() -> None:
    new_hire = hypothetical(groups=["engineering", " "], claims={"employee_type": "contractor"}, idp="okta")
    assert new_hire.groups == {"engineering"} and new_hire.id == ""
    explanation = compile(POLICY).explain(request(new_hire.subject(), DEMO), any_client=True, any_login=True)
    assert explanation.decision.allowed and explanation.decision.scopes == {"tools:read"}
    assert set(explanation.decision.rule_ids) == {"engineering-demo", "contractors-read-only"}


@pytest.mark.parametrize("pairs,expected", [
    (["department=finance"], {"department": "finance"}),
    (["level=3", "admin=true", 'code="3"'], {"level": 3, "admin": True, "code": "3"}),
    (["team=a", "team=b", "team=c"], {"team": ["a", "b", "c"]}),
    (["note=a=b", "x= {1} "], {"note": "a=b", "x": "{1}"}),
])
def test_claims_from_name_value_pairs_keep_their_type(pairs, expected) -> None:
    assert parse_claims(pairs) == expected


@pytest.mark.parametrize("bad", ["department", "=finance", " =x"])
def test_a_claim_without_a_name_or_value_separator_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="name=value"):
        parse_claims([bad])
