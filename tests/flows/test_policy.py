"""Policy in force: denials at authorize, loss of access at the next refresh, versions, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from sqlalchemy import select

from broker.dev import DEV_POLICY
from broker.registry import policies
from broker.storage import users
from broker.storage.models import AuditEvent, User
from tests.support.oauth_flow import authorize, pkce, refresh, register_client, tokens_for

READ_ONLY = DEV_POLICY.replace('scopes = "*"', 'scopes = ["tools:read"]')


def last_event(state, event_type: str) -> AuditEvent:
    with state.database.sessions() as session:
        return session.scalars(select(AuditEvent).where(AuditEvent.event_type == event_type)
                               .order_by(AuditEvent.id.desc())).first()


async def test_user_outside_the_group_is_denied_at_authorize(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    redirect = await authorize(client, new.row.id, pkce()[1], username="bob")
    assert redirect["error"] == "access_denied" and "engineering" not in redirect["error_description"]
    event = last_event(state, "authorization.decision")
    assert event.outcome == "denied" and event.user_id is not None and event.data["reason"]


async def test_leaving_the_group_ends_access_at_the_next_refresh(client: httpx.AsyncClient, state) -> None:
    new = register_client(state, trusted=True)
    body = await tokens_for(client, new.row.id)
    with state.database.transaction() as session:
        alice = session.scalars(select(User)).one()
        users.set_groups(session, alice.id, "idp:test", [])
    response = await refresh(client, new.row.id, body["refresh_token"])
    assert response.status_code == 400 and response.json() == {
        "error": "invalid_grant", "error_description": "access to this MCP server is not allowed"}
    assert last_event(state, "authorization.denied").data["rule_ids"] == []


async def test_a_policy_change_narrows_scopes_at_the_next_refresh(client: httpx.AsyncClient, state) -> None:
    new = register_client(state, trusted=True)
    body = await tokens_for(client, new.row.id)
    assert body["scope"] == "tools:call tools:read"
    with state.database.transaction() as session:
        policies.import_policy(session, READ_ONLY, issuer=state.settings.issuer, author="test")
    narrowed = await refresh(client, new.row.id, body["refresh_token"])
    assert narrowed.json()["scope"] == "tools:read"
    with state.database.transaction() as session:
        policies.rollback(session, 1, author="test")
    again = await refresh(client, new.row.id, narrowed.json()["refresh_token"])
    assert again.json()["scope"] == "tools:read"  # scopes only ever shrink within a family


async def test_cli_export_import_dry_run_rollback(client, state, cli, capsys, tmp_path: Path) -> None:
    await tokens_for(client, register_client(state, trusted=True).row.id)  # alice is known
    await authorize(client, register_client(state).row.id, pkce()[1], username="bob")  # and bob
    assert cli(["policy", "export"]) == 0
    exported = capsys.readouterr().out
    assert "engineering-demo" in exported
    widened = tmp_path / "policy.toml"
    widened.write_text(exported.replace('groups = ["engineering"]', 'groups = ["engineering", "sales"]'))
    assert cli(["policy", "import", str(widened), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "bob@example.com" in out and "dry run: nothing applied" in out
    assert cli(["policy", "import", str(widened), "--comment", "sales too"]) == 0
    assert "policy version 2 is now in force" in capsys.readouterr().out
    assert cli(["policy", "who-can", "--server", "demo", "--json"]) == 0
    emails = {u["email"] for u in json.loads(capsys.readouterr().out)["users"]}
    assert emails == {"alice@example.com", "bob@example.com"}
    assert cli(["policy", "rollback", "1"]) == 0 and "version 3" in capsys.readouterr().out
    assert cli(["policy", "explain", "--user", "bob@example.com", "--server", "demo"]) == 0
    assert capsys.readouterr().out.startswith("denied (no rule allows bob@example.com to reach demo)")
    assert cli(["policy", "history", "--json"]) == 0
    assert [v["version"] for v in json.loads(capsys.readouterr().out)] == [3, 2, 1]


async def test_cli_refuses_an_invalid_policy_listing_every_problem(state, cli, capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nid = "a"\neffect = "allow"\nscopes = ["nope"]\ncolour = "red"\n'
                   '[rules.subjects]\ngroups = ["x"]\n[rules.targets]\nservers = ["gihub"]\n')
    assert cli(["policy", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 5" in err and "unknown server 'gihub'" in err and "nothing was applied" in err
    with state.database.sessions() as session:
        assert policies.current_document(session)[0] == 1
