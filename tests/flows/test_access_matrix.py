"""Who can reach what: the access matrix, simulating people the broker does not know yet, and dry runs that
report groups as well as known users (CLI and admin API; the console has its own tests)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pytest

from broker.dev import DEV_POLICY
from broker.registry import admin as registry_admin
from broker.registry import policies
from tests.support.oauth_flow import authorize, pkce, register_client, tokens_for

CRM = registry_admin.ServerSpec(id="crm", name="CRM", resource="https://crm.example.com/mcp",
                                scopes={"crm:read": "Read", "crm:write": "Write"}, default_scopes=["crm:read"],
                                tags=["sales"])
POLICY = DEV_POLICY + '''
[[rules]]
id = "sales-crm"
effect = "allow"
scopes = "*"

[rules.subjects]
groups = ["sales"]

[rules.targets]
tags = ["sales"]

[[rules]]
id = "contractors-no-writes"
effect = "deny"
scopes = ["crm:write"]

[rules.subjects]
claims = { employee_type = "contractor" }

[rules.targets]
all = true

[[rules]]
id = "interns-no-crm"
effect = "deny"
scopes = "*"

[rules.subjects]
groups = ["interns"]

[rules.targets]
servers = ["crm"]
'''


@pytest.fixture
def sales_policy(state) -> None:
    with state.database.transaction() as session:
        registry_admin.add(session, CRM)
        policies.import_policy(session, POLICY, issuer=state.settings.issuer, author="test")


def run(cli, capsys, *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cells(matrix: dict) -> dict[tuple[str, str], dict]:
    return {(row["label"], cell["server"]): cell for row in matrix["rows"] for cell in row["cells"]}


def test_cli_matrix_shows_each_subject_and_server_with_the_deciding_rules(sales_policy, cli, capsys) -> None:
    code, out, _ = run(cli, capsys, "policy", "matrix", "--json")
    assert code == 0
    matrix = json.loads(out)
    assert matrix["servers"] == ["crm", "demo"]
    assert [r["label"] for r in matrix["rows"]][:4] == ["everyone", "engineering", "interns", "sales"]
    found = cells(matrix)
    assert found[("engineering", "demo")] == {
        "server": "demo", "state": "allowed", "scopes": ["tools:call", "tools:read"],
        "allowed_by": ["engineering-demo"], "denied_by": [], "withheld": [], "conditional": []}
    assert found[("sales", "crm")]["scopes"] == ["crm:read", "crm:write"]
    interns = found[("interns", "crm")]
    assert interns["state"] == "denied" and interns["denied_by"] == ["interns-no-crm"]
    assert found[("everyone", "demo")]["state"] == "none"
    contractor = found[('claim employee_type = "contractor"', "crm")]
    assert contractor["state"] == "denied" and contractor["denied_by"] == ["contractors-no-writes"]


def test_cli_matrix_filters_by_server_tag_group_and_user(sales_policy, cli, capsys) -> None:
    code, out, _ = run(cli, capsys, "policy", "matrix", "--tag", "sales", "--group", "SAL", "--json")
    matrix = json.loads(out)
    assert code == 0 and matrix["servers"] == ["crm"] and [r["label"] for r in matrix["rows"]] == ["sales"]
    code, out, _ = run(cli, capsys, "policy", "matrix", "--server", "demo", "--user", "alice", "--json")
    assert code == 0 and json.loads(out)["rows"] == []  # nobody signed in yet


async def test_cli_matrix_adds_known_users_on_demand(sales_policy, cli, capsys, client, state) -> None:
    await tokens_for(client, register_client(state, trusted=True).row.id)  # alice signs in
    code, out, _ = run(cli, capsys, "policy", "matrix", "--user", "alice", "--server", "demo")
    assert code == 0
    assert out.splitlines() == ["user Alice Anders <alice@example.com>:",
                                "  demo: tools:call tools:read  [engineering-demo]"]


def test_cli_matrix_exports_csv_one_line_per_subject_and_server(sales_policy, cli, capsys) -> None:
    code, out, _ = run(cli, capsys, "policy", "matrix", "--csv", "--server", "crm")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0][:5] == ["kind", "subject", "server", "state", "scopes"]
    assert ["group", "sales", "crm", "allowed", "crm:read crm:write", "sales-crm", "", "", ""] in rows
    assert ["group", "interns", "crm", "denied", "", "", "interns-no-crm", "", ""] in rows


def test_cli_matrix_refuses_an_unknown_server_in_one_line(sales_policy, cli, capsys) -> None:
    code, out, err = run(cli, capsys, "policy", "matrix", "--server", "nope")
    assert (code, out, err) == (2, "", "broker: no MCP server 'nope'\n")


def test_cli_explains_a_person_the_broker_does_not_know_yet(sales_policy, cli, capsys) -> None:
    code, out, _ = run(cli, capsys, "policy", "explain", "--groups", "sales,interns", "--server", "crm", "--json")
    decision = json.loads(out)
    assert code == 0 and decision["allowed"] is False and decision["rule_ids"] == ["sales-crm", "interns-no-crm"]
    code, out, _ = run(cli, capsys, "policy", "explain", "--groups", "sales", "--claims", "employee_type=contractor",
                       "--idp", "test", "--server", "crm")
    assert code == 0 and out.startswith("allowed: crm:read (allowed by sales-crm)\n")
    assert "[  -  ] interns-no-crm (deny): subject: the person matches none of: groups interns" in out
    code, out, _ = run(cli, capsys, "policy", "explain", "--groups", "engineering", "--server", "crm")
    assert out.startswith("denied (no rule allows the person to reach crm)")


@pytest.mark.parametrize("argv,message", [
    (["--user", "alice@example.com", "--groups", "sales"], "name a known user with --user, or describe a person"),
    ([], "name a known user with --user, or describe a person"),
    (["--claims", "employee_type"], "--claims: claim 'employee_type': write it as name=value"),
])
def test_cli_explain_refuses_an_ambiguous_or_malformed_subject(sales_policy, cli, capsys, argv, message) -> None:
    code, out, err = run(cli, capsys, "policy", "explain", *argv, "--server", "crm")
    assert code == 2 and out == "" and err.startswith(f"broker: {message}") and err.count("\n") == 1


def test_cli_dry_run_on_a_new_deployment_reports_groups_and_says_it_knows_no_users(state, cli, capsys,
                                                                                   tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(DEV_POLICY.replace('groups = ["engineering"]', 'groups = ["engineering", "sales"]'))
    code, out, _ = run(cli, capsys, "policy", "import", str(path), "--dry-run")
    assert code == 0
    assert "group sales gains demo: +tools:call +tools:read" in out
    assert "the broker knows no users yet" in out and "dry run: nothing applied" in out


async def test_cli_dry_run_lists_known_users_who_gain_access(state, cli, capsys, client, tmp_path: Path) -> None:
    await authorize(client, register_client(state).row.id, pkce()[1], username="bob")  # bob is known, denied
    path = tmp_path / "policy.toml"
    path.write_text(DEV_POLICY.replace('groups = ["engineering"]', 'groups = ["engineering", "sales"]'))
    code, out, _ = run(cli, capsys, "policy", "import", str(path), "--dry-run")
    assert code == 0 and "bob@example.com gains demo" in out and "1 change(s) for the 1 known users" in out


# -------------------------------------------------------------------- admin API

API = "/admin/api/v1"
WIDENED = DEV_POLICY.replace('groups = ["engineering"]', 'groups = ["engineering", "sales"]')


async def bearer(client: httpx.AsyncClient, state, *scopes: str) -> dict[str, str]:
    robot = register_client(state, name="Automation", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=scopes)
    response = await client.post("/token", data={"grant_type": "client_credentials",
                                                  "resource": f"{state.settings.issuer}/admin/api"},
                                 auth=(robot.row.id, robot.secret))
    return {"authorization": f"Bearer {response.json()['access_token']}"}


async def test_api_matrix_as_json_and_csv_with_filters(sales_policy, client: httpx.AsyncClient, state) -> None:
    auth = await bearer(client, state, "admin:read")
    matrix = (await client.get(f"{API}/access", headers=auth)).json()
    assert matrix["servers"] == ["crm", "demo"]
    assert cells(matrix)[("sales", "crm")]["allowed_by"] == ["sales-crm"]
    filtered = (await client.get(f"{API}/access", params={"tag": "sales", "group": "intern"}, headers=auth)).json()
    assert filtered["servers"] == ["crm"] and [r["label"] for r in filtered["rows"]] == ["interns"]
    exported = await client.get(f"{API}/access", params={"format": "csv", "server": "demo"}, headers=auth)
    assert exported.headers["content-type"].startswith("text/csv")
    assert 'filename="access.csv"' in exported.headers["content-disposition"]
    assert "group,engineering,demo,allowed,tools:call tools:read,engineering-demo" in exported.text
    missing = await client.get(f"{API}/access", params={"server": "ghost"}, headers=auth)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert (await client.get(f"{API}/access", params={"format": "xml"}, headers=auth)).status_code == 400
    assert (await client.get(f"{API}/access", headers=await bearer(client, state, "admin:write"))).status_code == 403


async def test_api_explains_a_person_not_known_yet(sales_policy, client: httpx.AsyncClient, state) -> None:
    auth = await bearer(client, state, "admin:read")
    person = {"groups": ["sales"], "claims": {"employee_type": "contractor"}, "idp": "test"}
    answer = await client.post(f"{API}/policy/explain", json={"person": person, "server": "crm"}, headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["allowed"] is True and answer.json()["scopes"] == ["crm:read"]
    assert answer.json()["rule_ids"] == ["sales-crm", "contractors-no-writes"]
    for body in ({"server": "crm"}, {"user": "alice@example.com", "person": person, "server": "crm"}):
        refused = await client.post(f"{API}/policy/explain", json=body, headers=auth)
        assert refused.status_code == 400 and "either `user`" in refused.json()["error_description"]
    typo = await client.post(f"{API}/policy/explain", json={"person": {"group": ["x"]}, "server": "crm"}, headers=auth)
    assert typo.status_code == 400


async def test_api_dry_run_reports_groups_says_it_knows_no_users_and_binds_the_apply(
        client: httpx.AsyncClient, state) -> None:
    auth = await bearer(client, state, "admin:read", "admin:write")
    dry = (await client.post(f"{API}/policy", json={"document": WIDENED, "dry_run": True}, headers=auth)).json()
    assert dry["known_users"] == 0 and dry["access_changes"] == [] and dry["base_version"] == 1
    assert dry["subject_changes"] == [{"subject_kind": "group", "subject": "sales", "server_id": "demo",
                                       "kind": "gains", "before_scopes": [], "after_scopes": ["tools:call",
                                                                                              "tools:read"]}]
    other = WIDENED + "\n# a comment changes the document\n"
    stale = await client.post(f"{API}/policy", json={"document": other, "review_digest": dry["review_digest"]},
                              headers=auth)
    assert stale.status_code == 409 and stale.json()["error"] == "conflict"
    assert (await client.get(f"{API}/policy", headers=auth)).json()["version"] == 1
    applied = await client.post(f"{API}/policy", json={"document": WIDENED, "review_digest": dry["review_digest"]},
                                headers=auth)
    assert applied.status_code == 200 and applied.json()["version"] == 2
    again = await client.post(f"{API}/policy", json={"document": WIDENED, "review_digest": dry["review_digest"]},
                              headers=auth)
    assert again.status_code == 409  # the policy moved on since that dry run: version 2 is in force

