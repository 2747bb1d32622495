"""Simulations: who can reach a server, who gains or loses what in a policy change, and the document diff."""

from __future__ import annotations

import dataclasses
import datetime as dt

from broker.policy import (
    PolicyDocument,
    UserFacts,
    compile,
    diff_access,
    diff_documents,
    render_document_diff,
    who_can,
)
from tests.unit.policy.builders import DEMO, GITHUB, NOW, WIKI, rule

ALICE = UserFacts("u-alice", "alice@example.com", "okta", frozenset({"engineering"}))
BOB = UserFacts("u-bob", "bob@example.com", "okta", frozenset({"sales"}))
CAROL = UserFacts("u-carol", "carol@example.com", "entra", frozenset({"engineering"}),
                  {"employee_type": "contractor"})
DAVE = UserFacts("u-dave", None, "okta")
USERS = [BOB, DAVE, CAROL, ALICE]

OLD = PolicyDocument((
    rule("engineering-demo", groups=["engineering"], servers=["demo"], scopes=["tools:read", "tools:call"]),
    rule("contractors-read-only", "deny", claims={"employee_type": "contractor"}, all_servers=True,
         scopes=["tools:call", "repo:write"]),
    rule("admins-mfa", groups=["sales"], servers=["demo"], scopes=["tools:admin"], amr=["mfa"]),
    rule("wiki-for-all", everyone=True, servers=["wiki"], scopes=["pages:read"]),
))


def test_who_can_lists_users_groups_and_everyone() -> None:
    result = who_can(compile(OLD), DEMO, USERS, now=NOW)
    assert [(u.label, set(s)) for u, s in result.users] == [
        ("alice@example.com", {"tools:read", "tools:call"}), ("bob@example.com", {"tools:admin"}),
        ("carol@example.com", {"tools:read"})]
    assert [(g, set(s)) for g, s in result.groups] == [("engineering", {"tools:read", "tools:call"}),
                                                       ("sales", {"tools:admin"})]
    assert result.everyone == frozenset()
    assert who_can(compile(OLD), WIKI, USERS, now=NOW).everyone == {"pages:read"}


def test_who_can_with_a_pinned_login() -> None:
    result = who_can(compile(OLD), DEMO, USERS, now=NOW, amr=["pwd"])
    assert [u.label for u, _ in result.users] == ["alice@example.com", "carol@example.com"]


def test_diff_access_names_who_gains_and_loses_what() -> None:
    new = PolicyDocument((
        rule("engineering-demo", groups=["engineering"], servers=["demo"], scopes=["tools:read"]),  # narrowed
        OLD.rules[1], OLD.rules[2],
        rule("sales-github", groups=["sales"], servers=["github"], scopes=["repo:read"]),  # added
    ))  # wiki-for-all removed
    changes = diff_access(compile(OLD), compile(new), [DEMO, GITHUB, WIKI], USERS, now=NOW)
    assert [c.render() for c in changes] == [
        "alice@example.com changes demo: -tools:call",
        "alice@example.com loses wiki: -pages:read",
        "bob@example.com gains github: +repo:read",
        "bob@example.com loses wiki: -pages:read",
        "carol@example.com loses wiki: -pages:read",
        "u-dave loses wiki: -pages:read",
    ]
    assert changes[0].before_scopes == {"tools:read", "tools:call"} and changes[0].after_scopes == {"tools:read"}


def test_diff_access_of_an_unchanged_policy_is_empty() -> None:
    reordered = PolicyDocument(tuple(reversed(OLD.rules)))
    assert diff_access(compile(OLD), compile(reordered), [DEMO, GITHUB, WIKI], USERS, now=NOW) == []


def test_diff_access_sees_windows_at_now() -> None:
    later = dataclasses.replace(OLD.rules[0], conditions=dataclasses.replace(
        OLD.rules[0].conditions, not_before=NOW + dt.timedelta(days=1)))
    new = PolicyDocument((later, *OLD.rules[1:]))
    changes = diff_access(compile(OLD), compile(new), [DEMO], USERS, now=NOW)
    assert [(c.user.label, c.kind) for c in changes] == [("alice@example.com", "loses"), ("carol@example.com",
                                                                                          "loses")]


def test_document_diff() -> None:
    new = PolicyDocument((
        rule("engineering-demo", groups=["engineering", "platform"], servers=["demo"],
             scopes=["tools:read", "tools:call"]),
        *OLD.rules[1:3],
        rule("sales-github", groups=["sales"], servers=["github"], scopes=["repo:read"]),
    ))
    changes = diff_documents(OLD, new)
    assert [(c.kind, c.rule_id) for c in changes] == [("changed", "engineering-demo"), ("removed", "wiki-for-all"),
                                                      ("added", "sales-github")]
    text = render_document_diff(changes)
    assert "changed rule engineering-demo\n" in text
    assert '  - groups = ["engineering"]\n  + groups = ["engineering", "platform"]\n' in text
    assert '  - id = "wiki-for-all"' in text
    assert '  + id = "sales-github"' in text
    assert render_document_diff([]) == ""
