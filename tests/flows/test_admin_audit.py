"""Names instead of ids, audit search as people ask, one event per denial, an offboarded user's page, and
revoking one session (console, admin API, CLI)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broker.admin import queries
from broker.storage.models import AuditEvent, RefreshTokenFamily, User, utcnow
from tests.conftest import ISSUER
from tests.flows import test_admin_console as console
from tests.support.oauth_flow import authorize, pkce, refresh, register_client, tokens_for

settings, carol = console.settings, console.carol  # the console's users and roles, and carol signed in
API = "/admin/api/v1"


@pytest.fixture
async def browser(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An MCP user's browser, apart from carol's console session."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        yield http


async def bob_is_denied(browser: httpx.AsyncClient, state) -> str:
    """Bob (sales) signs in through an MCP client and the dev policy refuses him; returns the client's id."""
    tool = register_client(state, name="Sales Assistant")
    redirect = await authorize(browser, tool.row.id, pkce()[1], username="bob")
    assert redirect["error"] == "access_denied"
    return tool.row.id


def user_id(state, email: str) -> str:
    with state.database.sessions() as session:
        return session.scalars(select(User.id).where(User.email == email)).one()


# -------------------------------------------------------------------- counts and names


async def test_a_denied_sign_in_counts_once_on_the_dashboard(carol, browser, state) -> None:
    await bob_is_denied(browser, state)
    with state.database.sessions() as session:
        data = queries.dashboard(session, utcnow())
        recorded = {e.event_type for e in session.scalars(select(AuditEvent).where(AuditEvent.outcome == "denied"))}
    assert recorded == {"authorization.decision", "authorization.failed"}  # both facts stay in the log
    assert sum(data.denied_per_hour) == 1 and [e.event_type for e in data.recent_denials] == ["authorization.failed"]
    page = (await carol.get("/admin")).text
    assert page.count("denied</title>") == 24 and "1 denied</title>" in page
    denials = page.split('id="recent-denials"')[1].split("</table>")[0]
    assert denials.count("<tr>") == 2  # the header and one denial
    assert "Bob Brown &lt;bob@example.com&gt;" in denials and "Sales Assistant" in denials
    assert "no rule allows bob@example.com to reach demo" in denials  # the policy's reason, on the failure


async def test_the_audit_log_names_users_clients_servers_and_actors(carol, browser, state) -> None:
    client_id = await bob_is_denied(browser, state)
    page = (await carol.get("/admin/audit")).text
    assert "Bob Brown &lt;bob@example.com&gt;" in page
    assert f'<span title="{client_id}" class="ref">Sales Assistant</span>' in page
    assert '<span title="demo" class="ref">Demo MCP server</span>' in page
    assert '<a href="/admin/users/' in page and 'title="console:carol@example.com"' in page
    assert "Carol Chen &lt;carol@example.com&gt;" in page  # the actor of admin.login
    bob = user_id(state, "bob@example.com")
    assert f">{bob[:8]}<" not in page  # no id prefixes instead of names


async def test_recent_offboardings_name_the_user_and_who_offboarded_them(carol, state) -> None:
    carol_id = user_id(state, "carol@example.com")
    with state.database.transaction() as session:
        from broker.lifecycle import offboarding

        session.add(User(id="u-dana", email="dana@example.com", display_name="Dana Doe", status="active"))
        session.flush()
        offboarding.revoke_user(session, "u-dana", reason="left", actor="console:carol@example.com",
                                now=utcnow(), source="console")
    page = (await carol.get("/admin")).text
    offboardings = page.split('id="recent-offboardings"')[1].split("</table>")[0]
    assert "Dana Doe &lt;dana@example.com&gt;" in offboardings and "left" in offboardings
    assert f'<a href="/admin/users/{carol_id}" title="console:carol@example.com"' in offboardings


# -------------------------------------------------------------------- search


async def test_audit_search_by_email_name_client_server_outcome_text_and_time(carol, browser, state) -> None:
    client_id = await bob_is_denied(browser, state)
    await tokens_for(browser, register_client(state, name="Code Helper", trusted=True).row.id)  # alice

    async def events(**params: str) -> list[str]:
        page = await carol.get("/admin/audit", params=params)
        assert page.status_code == 200, page.text
        return re.findall(r'<td class="event-type">([^<]+)</td>', page.text)

    assert set(await events(user="bob@example.com")) == {"login.success", "authorization.decision",
                                                          "authorization.failed"}
    assert set(await events(user="brown")) == set(await events(user=user_id(state, "bob@example.com")))
    assert "token.issued" in await events(client="code help") and "authorization.failed" not in await events(
        client="code help")
    assert set(await events(client=client_id)) == set(await events(client="Sales Assistant"))
    assert "token.issued" in await events(server="demo mcp")
    assert await events(outcome="denied") == ["authorization.failed", "authorization.decision"]
    assert await events(q="Engineering-Demo") == ["authorization.decision"]  # alice's: a rule id in the data
    assert await events(since="2000-01-01T00:00", until="2000-01-02T00:00") == []
    assert await events(user="bob", outcome="allowed") == ["login.success"]


async def test_a_search_that_names_nobody_says_so(carol) -> None:
    page = await carol.get("/admin/audit", params={"user": "nobody@example.com"})
    assert page.status_code == 200 and "No events: no user matches &#39;nobody@example.com&#39;" in page.text


async def test_a_malformed_time_is_reported_and_nothing_is_searched(carol) -> None:
    page = await carol.get("/admin/audit", params={"since": "yesterday"})
    assert page.status_code == 400 and 'id="filter-problems"' in page.text and "not a date and time" in page.text
    assert "No events match." in page.text


async def test_search_text_is_literal_not_a_pattern(carol, browser, state) -> None:
    await bob_is_denied(browser, state)
    page = await carol.get("/admin/audit", params={"q": "%"})
    assert "No events match." in page.text  # % and _ are not wildcards


async def test_the_denials_view_lists_each_refusal_once_with_its_reason(carol, browser, state) -> None:
    await bob_is_denied(browser, state)
    page = await carol.get("/admin/audit/denials")
    table = page.text.split('id="events"')[1].split("</table>")[0]
    assert table.count('<td class="num">') == 1 and "authorization.failed" in table
    assert "no rule allows bob@example.com to reach demo" in table
    exported = await carol.get("/admin/audit/export.jsonl", params={"denials": "1"})
    assert [json.loads(line)["event_type"] for line in exported.text.splitlines()] == ["authorization.failed"]


async def test_the_export_follows_the_search(carol, browser, state) -> None:
    await bob_is_denied(browser, state)
    exported = await carol.get("/admin/audit/export.jsonl", params={"user": "bob@example.com"})
    bob = user_id(state, "bob@example.com")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert len(lines) == 3 and {line["user_id"] for line in lines} == {bob}
    assert (await carol.get("/admin/audit/export.jsonl", params={"user": "ghost"})).text == ""


async def test_api_audit_search_by_names_with_names_in_the_answer(client, browser, state) -> None:
    from tests.flows.test_access_matrix import bearer

    await bob_is_denied(browser, state)
    auth = await bearer(client, state, "admin:read")
    page = (await client.get(f"{API}/audit", params={"user": "bob@example.com", "denials": "true"},
                             headers=auth)).json()
    [event] = page["events"]
    assert event["event_type"] == "authorization.failed" and event["user_email"] == "bob@example.com"
    assert event["user_name"] == "Bob Brown" and event["client_name"] == "Sales Assistant"
    assert event["server_name"] == "Demo MCP server" and event["actor_name"] == "Sales Assistant"
    assert event["data"]["rule_ids"] == [] and "no rule allows" in event["data"]["reason"]
    texts = (await client.get(f"{API}/audit", params={"q": "bob@example.com", "outcome": "denied"},
                              headers=auth)).json()["events"]
    assert {e["event_type"] for e in texts} == {"authorization.failed", "authorization.decision"}
    nobody = (await client.get(f"{API}/audit", params={"client": "no such"}, headers=auth)).json()
    assert nobody["events"] == [] and nobody["unmatched"] == "no client matches 'no such'"
    assert (await client.get(f"{API}/audit", params={"outcome": "maybe"}, headers=auth)).status_code == 400


# -------------------------------------------------------------------- an offboarded user's page


async def test_an_offboarded_users_page_says_they_reach_nothing_and_why(carol, browser, state) -> None:
    await tokens_for(browser, register_client(state, trusted=True).row.id)
    alice = user_id(state, "alice@example.com")
    token = console.csrf_of(await carol.get(f"/admin/users/{alice}/offboard"))
    done = await carol.post(f"/admin/users/{alice}/offboard", data={"csrf_token": token, "reason": "left the company",
                                                                    "confirm": "alice@example.com"})
    assert done.status_code == 303
    page = (await carol.get(f"/admin/users/{alice}")).text
    reach = page.split('id="reach-panel"')[1].split("</section>")[0]
    assert 'id="reach-none"' in reach and "<strong>None.</strong>" in reach
    assert "left the company" in reach and "Carol Chen &lt;carol@example.com&gt;" in reach and "(console)" in reach
    before_details = reach.split('id="reach-if-restored"')[0]
    assert "<code>tools:read</code>" not in before_details  # what the policy would give is tucked away
    assert "What the policy would give if they were restored" in reach


async def test_an_active_users_page_lists_what_they_reach(carol, browser, state) -> None:
    await tokens_for(browser, register_client(state, trusted=True).row.id)
    page = (await carol.get(f"/admin/users/{user_id(state, 'alice@example.com')}")).text
    reach = page.split('id="reach-panel"')[1].split("</section>")[0]
    assert 'id="reach-none"' not in reach and "<code>tools:read</code>" in reach


# -------------------------------------------------------------------- revoking one session


async def two_sessions(browser, state) -> tuple[str, dict, dict]:
    """Alice signs in through two clients; her id and the two token responses (with their client_id)."""
    found = []
    for name in ("Laptop client", "Desktop client"):
        client_id = register_client(state, name=name, trusted=True).row.id
        found.append({**await tokens_for(browser, client_id), "client_id": client_id})
    return user_id(state, "alice@example.com"), found[0], found[1]


def family_of(state, client_name: str) -> RefreshTokenFamily:
    from broker.storage.models import Client

    with state.database.sessions() as session:
        client_id = session.scalars(select(Client.id).where(Client.name == client_name)).one()
        return session.scalars(select(RefreshTokenFamily).where(RefreshTokenFamily.client_id == client_id)).one()


async def test_revoke_one_session_from_the_user_page_with_confirmation(carol, browser, state) -> None:
    alice, laptop, desktop = await two_sessions(browser, state)
    family = family_of(state, "Laptop client")
    page = (await carol.get(f"/admin/users/{alice}")).text
    assert f'href="/admin/users/{alice}/sessions/{family.id}"' in page and "Laptop client" in page
    confirm = await carol.get(f"/admin/users/{alice}/sessions/{family.id}")
    assert confirm.status_code == 200 and "Revoke this session" in confirm.text and "Laptop client" in confirm.text
    done = await carol.post(f"/admin/users/{alice}/sessions/{family.id}",
                            data={"csrf_token": console.csrf_of(confirm), "reason": "laptop stolen"})
    assert done.status_code == 303 and done.headers["location"] == f"/admin/users/{alice}?done=session-revoked"
    assert (await refresh(browser, laptop["client_id"], laptop["refresh_token"])).status_code == 400
    assert (await refresh(browser, desktop["client_id"], desktop["refresh_token"])).status_code == 200
    with state.database.sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "user.session_revoked")).one()
        assert session.get(User, alice).status == "active"
    assert event.actor == "console:carol@example.com" and event.user_id == alice and event.server_id == "demo"
    assert event.data == {"family_id": family.id, "reason": "laptop stolen", "source": "console"}
    again = await carol.post(f"/admin/users/{alice}/sessions/{family.id}",
                             data={"csrf_token": console.csrf_of(confirm)})
    assert again.status_code == 409


async def test_revoking_a_session_needs_the_role_the_token_and_a_live_session(client, browser, state) -> None:
    alice, _, _ = await two_sessions(browser, state)
    family = family_of(state, "Laptop client")
    await console.sign_in(client, "dave")  # an auditor
    token = console.csrf_of(await client.get("/admin"))
    assert 'id="revoke-' not in (await client.get(f"/admin/users/{alice}")).text
    refused = await client.post(f"/admin/users/{alice}/sessions/{family.id}", data={"csrf_token": token})
    assert refused.status_code == 403
    await console.sign_in(client, "erin")  # security
    forged = await client.post(f"/admin/users/{alice}/sessions/{family.id}", data={})
    assert forged.status_code == 403 and "CSRF" in forged.text
    token = console.csrf_of(await client.get("/admin"))
    other = await client.post(f"/admin/users/{user_id(state, 'erin@example.com')}/sessions/{family.id}",
                              data={"csrf_token": token})  # not erin's session
    assert other.status_code == 409
    assert (await client.get(f"/admin/users/{alice}/sessions/nope")).status_code == 404
    with state.database.sessions() as session:
        assert session.get(RefreshTokenFamily, family.id).revoked_at is None


async def test_api_and_cli_revoke_one_session(client, browser, state, cli, capsys) -> None:
    from tests.flows.test_access_matrix import bearer

    alice, laptop, desktop = await two_sessions(browser, state)
    reader, security = await bearer(client, state, "admin:read"), await bearer(client, state, "security:revoke")
    detail = (await client.get(f"{API}/users/alice@example.com", headers=reader)).json()
    assert {s["client_name"] for s in detail["sessions"]} == {"Laptop client", "Desktop client"}
    laptop_id = next(s["id"] for s in detail["sessions"] if s["client_name"] == "Laptop client")
    revoked = await client.post(f"{API}/users/alice@example.com/sessions/{laptop_id}/revoke",
                                json={"reason": "lost"}, headers=security)
    assert revoked.status_code == 200 and revoked.json()["session_id"] == laptop_id
    missing = await client.post(f"{API}/users/alice@example.com/sessions/{laptop_id}/revoke", headers=security)
    assert missing.status_code == 404
    assert (await client.post(f"{API}/users/alice@example.com/sessions/{laptop_id}/revoke",
                              headers=reader)).status_code == 403
    desktop_id = family_of(state, "Desktop client").id
    assert cli(["users", "revoke-session", "alice@example.com", desktop_id, "--reason", "done", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["session_id"] == desktop_id
    assert cli(["users", "revoke-session", "alice@example.com", desktop_id]) == 2
    assert capsys.readouterr().err.startswith("broker: user ")
    assert (await refresh(browser, desktop["client_id"], desktop["refresh_token"])).status_code == 400
    with state.database.sessions() as session:
        sources = [e.data["source"] for e in session.scalars(select(AuditEvent).where(
            AuditEvent.event_type == "user.session_revoked").order_by(AuditEvent.id))]
    assert sources == ["admin-api", "cli"] and alice


async def test_a_text_search_reads_a_window_of_events_per_page_and_goes_on(client, state, monkeypatch) -> None:
    from broker import audit
    from broker.admin import audit_search
    from tests.flows.test_access_matrix import bearer

    auth = await bearer(client, state, "admin:read")
    with state.database.transaction() as session:
        for n in range(12):
            audit.record(session, "test.event", actor="bench", data={"note": "needle" if n in (1, 10) else "hay"})
    monkeypatch.setattr(audit_search, "TEXT_WINDOW", 5)
    found, cursor, pages = [], None, 0
    while True:
        params = {"q": "NEEDLE", **({"before": cursor} if cursor else {})}
        page = (await client.get(f"{API}/audit", params=params, headers=auth)).json()
        found += [e["data"]["note"] for e in page["events"]]
        pages, cursor = pages + 1, page["next_before"]
        if cursor is None:
            break
    assert found == ["needle", "needle"] and pages >= 3  # every event searched, a window at a time
