"""The policy file: every problem class reported with its line, all at once; dump/parse round trip."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from broker.policy import (
    ALL,
    PolicyDocument,
    PolicyError,
    Problem,
    ServerInfo,
    check_document,
    compile,
    dump_policy,
    parse_policy,
)
from tests.unit.policy.builders import DEMO, KNOWN, request, robot, rule, user

DOCS = Path(__file__).resolve().parents[3] / "docs" / "policy.md"
DOC_SERVERS = {
    "demo": ServerInfo(frozenset({"tools:read", "tools:call"})),
    "github": ServerInfo(frozenset({"repo:read", "repo:write"}), frozenset({"code"})),
    "ledger": ServerInfo(frozenset({"ledger:read", "ledger:export"}), frozenset({"finance"})),
    "broker-admin-api": ServerInfo(frozenset({"admin:read", "admin:write"}), builtin=True),
}

GOOD = """\
[[rules]]
id = "engineering-demo"
effect = "allow"
scopes = ["tools:read"]
subjects = { groups = ["engineering"] }
targets = { servers = ["demo"] }
"""


def problems(text: str, known=KNOWN) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, known)
    return caught.value.problems


def only(text: str, known=KNOWN) -> Problem:
    found = problems(text, known)
    assert len(found) == 1, found
    return found[0]


def docs_example() -> str:
    return re.search(r"```toml\n(.*?)```", DOCS.read_text(), re.S).group(1)


def test_the_documented_example_is_a_valid_policy() -> None:
    document = parse_policy(docs_example(), DOC_SERVERS)
    assert [r.id for r in document.rules] == ["engineering-demo", "finance-read", "platform-github",
                                               "no-writes-for-contractors", "auditors-q4", "reconciler",
                                               "incident-2026-11-github"]
    assert parse_policy(dump_policy(document), DOC_SERVERS) == document


def test_a_good_file_parses() -> None:
    (only_rule,) = parse_policy(GOOD, KNOWN).rules
    assert only_rule == rule("engineering-demo", groups=["engineering"], servers=["demo"], scopes=["tools:read"])


def test_an_empty_file_is_an_empty_policy() -> None:
    assert parse_policy("# nothing yet\n", KNOWN) == PolicyDocument()


# -------------------------------------------------------------------- one problem of each kind, with its line


def test_toml_syntax_error_names_its_line() -> None:
    problem = only(GOOD + "\n[[rules]]\nid = \n")
    assert problem.line == 9 and problem.message.startswith("TOML syntax error") and problem.rule_id is None


def test_a_syntax_error_at_the_end_of_the_document_names_the_last_line() -> None:
    problem = only(GOOD + 'description = """never closed\n')
    assert problem.message == "TOML syntax error: Unterminated string (at end of document)"
    assert problem.line == 7


def test_a_repeated_key_is_a_syntax_error() -> None:
    problem = only(GOOD + 'description = "one"\ndescription = "two"\n')
    assert problem.message.startswith("TOML syntax error: Cannot overwrite a value") and problem.line == 8


def test_unicode_line_separators_in_strings_do_not_shift_lines() -> None:
    text = GOOD.replace('effect = "allow"', 'description = "a\u2028b\u0085c"\neffect = "allow"') + "bogus = 1\n"
    problem = only(text)
    assert (problem.line, problem.message.split(" (")[0]) == (8, "unknown field 'bogus'")


UNKNOWN_FIELDS = {
    "top level": ('version = 2\n' + GOOD, 1, "unknown field 'version'"),
    "rule": (GOOD + 'priority = 1\n', 7, "unknown field 'priority'"),
    "subjects": (GOOD.replace('groups = ["engineering"]', 'groups = ["engineering"], teams = ["x"]'), 5,
                 "unknown field 'subjects.teams'"),
    "targets": (GOOD.replace('servers = ["demo"]', 'servers = ["demo"], server = "demo"'), 6,
                "unknown field 'targets.server'"),
    "conditions": (GOOD + '[rules.conditions]\nmfa = true\n', 8, "unknown field 'conditions.mfa'"),
    "misspelt table": (GOOD + '[rules.condition]\namr = ["mfa"]\n', 7, "unknown field 'condition'"),
}


@pytest.mark.parametrize("text,line,message", UNKNOWN_FIELDS.values(), ids=UNKNOWN_FIELDS)
def test_unknown_fields_anywhere(text, line, message) -> None:
    problem = only(text)
    assert (problem.line, problem.rule_id) == (line, None if line == 1 else "engineering-demo")
    assert problem.message.startswith(message)


def test_unknown_server() -> None:
    problem = only(GOOD.replace('servers = ["demo"]', 'servers = ["demo", "gitub"]'))
    assert (problem.line, problem.message) == (6, "unknown server 'gitub'")


def test_a_tag_no_server_carries() -> None:
    problem = only(GOOD.replace('servers = ["demo"]', 'tags = ["finance"]').replace('["tools:read"]', '"*"'))
    assert (problem.line, problem.message) == (6, "no registered server has the tag 'finance'")


def test_unknown_scope_for_the_named_server() -> None:
    problem = only(GOOD.replace('scopes = ["tools:read"]', 'scopes = ["tools:read", "repo:read"]'))
    assert (problem.line, problem.message) == (4, "unknown scope 'repo:read': not a scope of server demo")


def test_a_scope_of_any_targeted_server_is_known() -> None:
    text = GOOD.replace('scopes = ["tools:read"]', 'scopes = ["tools:read", "repo:read"]').replace(
        'servers = ["demo"]', 'servers = ["demo", "github"]')
    assert len(parse_policy(text, KNOWN).rules) == 1


def test_unknown_scope_for_tagged_and_all_targets() -> None:
    tagged = only(GOOD.replace('servers = ["demo"]', 'tags = ["internal"]').replace('"tools:read"', '"pages:read"'))
    assert tagged.message == "unknown scope 'pages:read': not a scope of any of the 2 targeted servers"
    everything = GOOD.replace('servers = ["demo"]', 'all = true').replace('"tools:read"', '"admin:read"')
    assert only(everything).message.startswith("unknown scope 'admin:read'")  # all never covers the admin API


BAD_TYPES = {
    "id": ('id = "engineering-demo"', "id = 7", 2, "id: must be a string, not an integer"),
    "effect": ('effect = "allow"', 'effect = "permit"', 3, 'effect must be "allow" or "deny", not \'permit\''),
    "scopes string": ('scopes = ["tools:read"]', 'scopes = "tools:read"', 4,
                      'scopes: must be a list of scope names or "*", not the string \'tools:read\''),
    "scopes number": ('scopes = ["tools:read"]', 'scopes = 3', 4, "scopes: must be a list of strings"),
    "groups string": ('groups = ["engineering"]', 'groups = "engineering"', 5, "subjects.groups: must be a list"),
    "everyone": ('groups = ["engineering"]', 'everyone = "yes"', 5, "subjects.everyone: must be true or false"),
    "claim value": ('groups = ["engineering"]', 'claims = { level = 1.5 }', 5,
                    "subjects.claims: level: a claim value must be a string, an integer or a boolean, not a number"),
    "subjects table": ('subjects = { groups = ["engineering"] }', 'subjects = ["engineering"]', 5,
                       "subjects must be a table"),
    "description": ('effect = "allow"', 'effect = "allow"\ndescription = 1', 4, "description: must be a string"),
}


@pytest.mark.parametrize("old,new,line,message", BAD_TYPES.values(), ids=BAD_TYPES)
def test_bad_types(old, new, line, message) -> None:
    found = problems(GOOD.replace(old, new))
    assert (found[0].line, found[0].message[:len(message)]) == (line, message), found
    if old.startswith("subjects"):
        assert len(found) == 1  # "no subjects" is not reported on top of the bad table


def test_bad_timestamps() -> None:
    text = GOOD + ('[rules.conditions]\nnot_before = 2026-01-01\nnot_after = 2026-02-01T00:00:00\n[[rules]]\n'
                   'id = "b"\neffect = "allow"\nscopes = "*"\nsubjects = { everyone = true }\n'
                   'targets = { all = true }\n'
                   'conditions = { not_before = "yesterday", not_after = "2026-02-01T00:00:00+01:00" }\n')
    found = problems(text)
    assert [(p.line, p.rule_id) for p in found] == [(8, "engineering-demo"), (9, "engineering-demo"), (16, "b")]
    assert "must be a timestamp with a UTC offset" in found[0].message and "a date" in found[0].message
    assert "has no UTC offset" in found[1].message
    assert "'yesterday' is not a valid timestamp" in found[2].message


def test_duplicate_rule_id_points_at_the_second() -> None:
    problem = only(GOOD + "\n" + GOOD)
    assert (problem.line, problem.rule_id) == (9, "engineering-demo")
    assert problem.message == "duplicate rule id 'engineering-demo' (rule 1 has it too)"


def test_rule_ids_are_slugs() -> None:
    problem = only(GOOD.replace('"engineering-demo"', '"Engineering Demo"'))
    assert problem.line == 2 and "must be a slug" in problem.message


CONTRADICTIONS = {
    "window ends before it starts": (
        '[rules.conditions]\nnot_before = 2026-02-01T00:00:00Z\nnot_after = 2026-01-01T00:00:00Z\n', 9,
        "not_after is before not_before, so the rule can never match"),
    "empty client allow-list": ('[rules.conditions]\nclients = []\n', 8, "conditions.clients: an empty list"),
    "empty amr": ('[rules.conditions]\namr = []\n', 8, "conditions.amr: an empty list"),
}


@pytest.mark.parametrize("extra,line,message", CONTRADICTIONS.values(), ids=CONTRADICTIONS)
def test_contradictory_conditions(extra, line, message) -> None:
    problem = only(GOOD + extra)
    assert problem.line == line and problem.message.startswith(message)


def test_rules_that_can_never_match() -> None:
    text = """\
[[rules]]
id = "no-subjects"
effect = "allow"
scopes = ["tools:read"]
targets = { servers = ["demo"] }

[[rules]]
id = "no-scopes"
effect = "allow"
subjects = { everyone = true }
targets = { servers = ["demo"] }

[[rules]]
id = "empty-scopes"
effect = "deny"
scopes = []
subjects = { everyone = true }
targets = { servers = ["demo"] }

[[rules]]
id = "no-targets"
effect = "deny"
scopes = "*"
subjects = { everyone = true }

[[rules]]
id = "robot-mfa"
effect = "allow"
scopes = "*"
subjects = { clients = ["ci-bot"] }
targets = { servers = ["demo"] }
conditions = { amr = ["mfa"], clients = ["other"] }
"""
    found = [(p.line, p.rule_id, p.message) for p in problems(text)]
    assert found == [
        (1, "no-subjects", "the rule has no subjects, so it can never match"),
        (7, "no-scopes", 'the rule has no scopes; list the scopes it grants, or "*" for all of a server\'s'),
        (16, "empty-scopes", "scopes: an empty list matches nothing; fill it in or remove the key"),
        (20, "no-targets", "the rule has no targets, so it can never match"),
        (32, "robot-mfa", "amr never holds for clients acting for themselves, the rule's only subjects, so it can "
                          "never match"),
        (32, "robot-mfa", "none of the rule's subject clients is in conditions.clients, so it can never match"),
    ]


def test_missing_id_and_effect() -> None:
    found = problems('[[rules]]\nscopes = "*"\nsubjects = { everyone = true }\ntargets = { all = true }\n')
    assert [(p.line, p.message) for p in found] == [(1, "every rule needs an id"),
                                                     (1, 'every rule needs an effect: "allow" or "deny"')]


def test_every_problem_at_once_in_line_order() -> None:
    text = """\
owner = "it"

[[rules]]
id = "a"
effect = "allow"
scopes = ["tools:read", "tools:fly"]

[rules.subjects]
groups = ["engineering"]
team = "x"

[rules.targets]
servers = ["demo", "nope"]

[[rules]]
id = "a"
effect = "deny"
scopes = "*"

[rules.subjects]
everyone = true

[rules.targets]
all = true

[rules.conditions]
not_before = 2026-02-01T00:00:00Z
not_after = 2026-01-01T00:00:00Z
"""
    found = [(p.line, p.message.split(":")[0].split(" (")[0]) for p in problems(text)]
    assert found == [(1, "unknown field 'owner'"), (6, "unknown scope 'tools"), (10, "unknown field 'subjects.team'"),
                     (13, "unknown server 'nope'"), (16, "duplicate rule id 'a'"),
                     (28, "not_after is before not_before, so the rule can never match")]


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy('x = 1\n' + GOOD.replace('["demo"]', '["nope"]'), KNOWN)
    assert str(caught.value).splitlines() == [
        "2 problems in the policy", "  line 1: unknown field 'x' (known: rules)",
        "  line 7, rule engineering-demo: unknown server 'nope'"]


def test_line_numbers_survive_multiline_strings_dotted_keys_and_inline_arrays() -> None:
    text = '''\
[[rules]]
id = "r"
description = """
[[rules]]
id = "not a rule"
"""
effect = "allow"
scopes = [
    "tools:read",
]
subjects.groups = ["engineering"]
subjects.everybody = true
targets = { servers = ["demo"] }
'''
    problem = only(text)
    assert (problem.line, problem.rule_id) == (12, "r") and "subjects.everybody" in problem.message


def test_rules_must_be_tables() -> None:
    problem = only('rules = ["a", "b"]\n')
    assert problem.line == 1 and "[[rules]]" in problem.message


def test_check_document_finds_problems_in_documents_built_in_code() -> None:
    document = PolicyDocument((rule("r", everyone=True, servers=["gone"]), rule("r", groups=["x"], servers=["demo"],
                                                                               scopes=["nope"])))
    assert [str(p) for p in check_document(document, KNOWN)] == [
        "rule r: duplicate rule id 'r' (rule 1 has it too)", "rule r: unknown server 'gone'",
        "rule r: unknown scope 'nope': not a scope of server demo"]


# -------------------------------------------------------------------- writing and round trips


EVERYTHING = PolicyDocument((
    rule("all-features", description='Quotes " and \\ backslashes,\nnew lines, tabs\t, bell \x07, del \x7f, ünïcödé 🚀',
         users=["alice@example.com", "u-123"], groups=["engineering", "on call"],
         claims={"department": ["finance", "legal"], "level": 3, "contractor": False,
                 "https://example.com/claims/region": "eu"},
         idps=["okta"], clients=["ci-bot"], everyone=True, servers=["demo", "github"], tags=["internal"],
         all_servers=True, scopes=["tools:read", "repo:read"], via=["claude", "codex"], acr=["gold"], amr=["mfa"],
         not_before=dt.datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=dt.UTC),
         not_after=dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    rule("deny-everything", "deny", everyone=True, servers=["wiki"], scopes=ALL),
    rule("many-users", users=[f"user{n:03d}@example.com" for n in range(40)], servers=["demo"], scopes=["tools:read"]),
))


def test_round_trip_is_exact() -> None:
    text = dump_policy(EVERYTHING)
    assert parse_policy(text, KNOWN) == EVERYTHING
    assert dump_policy(parse_policy(text, KNOWN)) == text


def test_dump_is_stable_and_canonical() -> None:
    shuffled = PolicyDocument(tuple(rule(r.id, r.effect, scopes=r.scopes, users=reversed(r.subjects.users),
                                         groups=r.subjects.groups, everyone=r.subjects.everyone,
                                         servers=reversed(r.targets.servers)) for r in EVERYTHING.rules[1:]))
    assert dump_policy(shuffled) == dump_policy(PolicyDocument(EVERYTHING.rules[1:]))
    text = dump_policy(EVERYTHING)
    assert 'scopes = "*"' in text and "not_after = 2026-12-31T21:59:59Z" in text
    assert 'claims = { contractor = false, department = ["finance", "legal"], ' \
           '"https://example.com/claims/region" = "eu", level = 3 }' in text
    assert '    "user039@example.com",\n]' in text  # long lists go one item per line


def test_a_parsed_policy_decides_like_the_document() -> None:
    policy = compile(parse_policy(GOOD, KNOWN))
    assert policy.decide(request(user(groups={"engineering"}), DEMO, None)).scopes == {"tools:read"}
    assert not policy.decide(request(robot(scopes=["tools:read"]), DEMO, None)).allowed
