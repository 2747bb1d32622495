"""The admin console in-process: sign-in through the test IdP, roles, CSRF, every page, escaping, forms, offboarding."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from broker.config import Settings
from broker.storage import signing_keys
from broker.storage.models import AdminSession, AuditEvent, McpServer, RefreshTokenFamily, User, utcnow
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT
from tests.support.oauth_flow import hidden_fields, local, register_client, tokens_for

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw", "erin": "erin-pw"}
CONSOLE_USERS = [*TEST_USERS,
                 {"username": "dave", "password": "dave-pw", "email": "dave@example.com", "name": "Dave Auditor",
                  "groups": ["auditors"]},
                 {"username": "erin", "password": "erin-pw", "email": "erin@example.com", "name": "Erin Security",
                  "groups": ["security"]}]
ADMIN = {"admin_groups": ["it-admins"], "security_groups": ["security"], "auditor_groups": ["auditors"]}
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PAGES = ["/admin", "/admin/servers", "/admin/servers/new", "/admin/servers/demo", "/admin/users", "/admin/policies",
         "/admin/policies/simulate?user=alice@example.com&server=demo",
         "/admin/policies/simulate?groups=sales,engineering&claims=level%3D3&idp=test&server=demo",
         "/admin/access", "/admin/access?server=demo&group=eng&user=carol",
         "/admin/policies/simulate?server=demo&who_can=1", "/admin/clients", "/admin/audit", "/admin/audit/verify",
         "/admin/audit/denials", "/admin/keys", "/admin/settings"]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    client = {**TESTIDP_CLIENT, "redirect_uris": [*TESTIDP_CLIENT["redirect_uris"], f"{ISSUER}/admin/callback/test"]}
    return make_settings(testidp={"users": CONSOLE_USERS, "clients": [client]}, admin=ADMIN)


async def sign_in(http: httpx.AsyncClient, username: str) -> httpx.Response:
    """/admin/login -> test IdP form -> /admin/callback/test; returns the callback's response."""
    start = await http.get("/admin/login?idp=test")
    assert start.status_code == 302, start.text
    form = await http.get(local(start.headers["location"]))
    fields = {**hidden_fields(form.text), "username": username, "password": PASSWORDS[username]}
    back = await http.post(local(_ACTION.search(form.text).group(1)), data=fields)
    assert back.status_code == 302, back.text
    return await http.get(local(back.headers["location"]))


def csrf_of(page: httpx.Response) -> str:
    return _CSRF.search(page.text).group(1)


@pytest.fixture
async def carol(client: httpx.AsyncClient) -> httpx.AsyncClient:
    done = await sign_in(client, "carol")
    assert done.status_code == 200 and "Signed in" in done.text
    return client


async def test_signed_out_visitor_is_sent_to_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/servers")
    assert response.status_code == 302 and response.headers["location"] == "/admin/login"
    assert (await client.get("/admin/login")).status_code == 200


async def test_carol_signs_in_with_a_strict_httponly_cookie_stored_hashed(client: httpx.AsyncClient,
                                                                          state: Any) -> None:
    done = await sign_in(client, "carol")
    cookie = next(h for h in done.headers.get_list("set-cookie") if h.startswith("broker-admin="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    value = client.cookies.get("broker-admin")
    with state.database.sessions() as session:
        row = session.scalars(select(AdminSession)).one()
        assert row.id != value and row.roles == ["admin", "security"] and row.email == "carol@example.com"
    dashboard = await client.get("/admin")
    assert dashboard.status_code == 200 and "carol@example.com" in dashboard.text


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_renders_for_an_admin(carol: httpx.AsyncClient, path: str) -> None:
    response = await carol.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text


async def test_a_user_without_a_console_group_is_refused(client: httpx.AsyncClient, state: Any) -> None:
    refused = await sign_in(client, "alice")
    assert refused.status_code == 403 and "No access to the admin console" in refused.text
    assert "broker-admin" not in client.cookies
    assert (await client.get("/admin")).status_code == 302
    with state.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AdminSession)) == 0
        assert session.scalar(select(AuditEvent).where(AuditEvent.event_type == "admin.login_refused")) is not None


async def test_an_auditor_reads_everything_and_changes_nothing(client: httpx.AsyncClient, state: Any) -> None:
    await sign_in(client, "dave")
    for path in PAGES:
        if path != "/admin/servers/new":
            assert (await client.get(path)).status_code == 200, path
    page = await client.get("/admin/servers/demo")
    assert "Disable server" not in page.text
    token = csrf_of(page)  # the sign-out form's token: valid, but the role is not
    response = await client.post("/admin/servers/demo/enabled", data={"csrf_token": token, "enabled": "false"})
    assert response.status_code == 403 and "does not allow" in response.text
    assert (await client.get("/admin/servers/new")).status_code == 403
    with state.database.sessions() as session:
        assert session.get(McpServer, "demo").enabled is True


async def test_security_may_offboard_but_not_manage_servers(client: httpx.AsyncClient) -> None:
    await sign_in(client, "erin")
    token = csrf_of(await client.get("/admin/users"))
    response = await client.post("/admin/servers/new", data={"csrf_token": token, "id": "x", "name": "x"})
    assert response.status_code == 403
    assert (await client.get("/admin/policies")).status_code == 200


async def test_a_post_without_or_with_a_stale_csrf_token_is_refused(carol: httpx.AsyncClient, state: Any) -> None:
    missing = await carol.post("/admin/servers/demo/enabled", data={"enabled": "false"})
    assert missing.status_code == 403 and "CSRF" in missing.text and "nothing was changed" in missing.text
    stale = await carol.post("/admin/servers/demo/enabled", data={"enabled": "false", "csrf_token": "x" * 43})
    assert stale.status_code == 403
    with state.database.sessions() as session:
        assert session.get(McpServer, "demo").enabled is True


async def test_server_create_edit_disable_is_audited_with_before_and_after(carol: httpx.AsyncClient,
                                                                           state: Any) -> None:
    token = csrf_of(await carol.get("/admin/servers/new"))
    form = {"csrf_token": token, "id": "crm", "name": "CRM", "resource": "https://crm.example.com/mcp",
            "scopes": "crm:read Read the CRM\ncrm:write Change it", "default_scopes": "crm:read"}
    created = await carol.post("/admin/servers/new", data=form)
    assert created.status_code == 303 and created.headers["location"] == "/admin/servers/crm?saved=1"
    edited = await carol.post("/admin/servers/crm", data={**form, "name": "CRM (prod)"})
    assert edited.status_code == 303
    disabled = await carol.post("/admin/servers/crm/enabled", data={"csrf_token": token, "enabled": "false"})
    assert disabled.status_code == 303
    with state.database.sessions() as session:
        row = session.get(McpServer, "crm")
        assert row.name == "CRM (prod)" and row.enabled is False
        events = {e.event_type: e for e in session.scalars(select(AuditEvent).where(AuditEvent.server_id == "crm"))}
    assert events["server.updated"].actor == "console:carol@example.com"
    assert events["server.updated"].data["before"]["name"] == "CRM"
    assert events["server.updated"].data["after"]["name"] == "CRM (prod)"
    assert set(events) == {"server.added", "server.updated", "server.disabled"}


async def test_invalid_server_form_keeps_what_was_typed_and_saves_nothing(carol: httpx.AsyncClient,
                                                                         state: Any) -> None:
    token = csrf_of(await carol.get("/admin/servers/new"))
    form = {"csrf_token": token, "id": "Bad Id!", "name": "Typed name", "resource": "not a url",
            "scopes": "ok:scope fine", "default_scopes": "missing", "access_token_lifetime": "soon"}
    response = await carol.post("/admin/servers/new", data=form)
    assert response.status_code == 400
    assert 'value="Typed name"' in response.text and 'value="Bad Id!"' in response.text
    assert 'value="soon"' in response.text and "ok:scope fine" in response.text
    assert 'id="error-access_token_lifetime"' in response.text
    response = await carol.post("/admin/servers/new", data={**form, "access_token_lifetime": ""})
    assert response.status_code == 400
    for field in ("id", "resource", "default_scopes"):
        assert f'id="error-{field}"' in response.text, field
    with state.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(McpServer)) == 1


async def test_stored_markup_renders_inert(carol: httpx.AsyncClient, state: Any) -> None:
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    token = csrf_of(await carol.get("/admin/servers/new"))
    await carol.post("/admin/servers/new", data={"csrf_token": token, "id": "evil", "name": evil, "description": evil,
                                                 "resource": "https://evil.example.com/mcp", "scopes": "a b"})
    with state.database.transaction() as session:
        for user in session.scalars(select(User)):
            user.display_name = evil
    for path in ("/admin/servers", "/admin/servers/evil", "/admin/users", "/admin/audit"):
        page = await carol.get(path)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (await carol.get("/admin/servers")).text


async def test_offboarding_asks_for_a_reason_and_confirmation_then_revokes_every_session(
        carol: httpx.AsyncClient, app: Any, state: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as bobs_browser:
        client = register_client(state)
        await tokens_for(bobs_browser, client.row.id, username="alice")
    with state.database.sessions() as session:
        alice = session.scalar(select(User).where(User.email == "alice@example.com"))
        alice_id = alice.id
    page = await carol.get(f"/admin/users/{alice_id}")
    assert page.status_code == 200 and "engineering" in page.text and 'id="no-families"' not in page.text
    confirm = await carol.get(f"/admin/users/{alice_id}/offboard")
    token = csrf_of(confirm)
    refused = await carol.post(f"/admin/users/{alice_id}/offboard", data={"csrf_token": token, "reason": "left",
                                                                          "confirm": "someone else"})
    assert refused.status_code == 400 and 'value="left"' in refused.text and 'id="error-confirm"' in refused.text
    done = await carol.post(f"/admin/users/{alice_id}/offboard",
                            data={"csrf_token": token, "reason": "left the company", "confirm": "alice@example.com"})
    assert done.status_code == 303
    with state.database.sessions() as session:
        assert session.get(User, alice_id).status == "offboarded"
        live = session.scalar(select(func.count()).select_from(RefreshTokenFamily)
                              .where(RefreshTokenFamily.user_id == alice_id, RefreshTokenFamily.revoked_at.is_(None)))
        assert live == 0
        event = session.scalar(select(AuditEvent).where(AuditEvent.event_type == "user.offboarded"))
        assert event.actor == "console:carol@example.com" and event.data["reason"] == "left the company"
    assert 'id="no-families"' in (await carol.get(f"/admin/users/{alice_id}")).text
    restored = await carol.post(f"/admin/users/{alice_id}/restore", data={"csrf_token": token})
    assert restored.status_code == 303
    with state.database.sessions() as session:
        assert session.get(User, alice_id).status == "active"


async def test_offboarding_an_admin_ends_their_console_session(client: httpx.AsyncClient, state: Any) -> None:
    await sign_in(client, "carol")
    with state.database.transaction() as session:
        session.scalar(select(User).where(User.email == "carol@example.com")).status = "offboarded"
    assert (await client.get("/admin")).status_code == 302


async def test_logout_ends_the_session_in_the_database(carol: httpx.AsyncClient, state: Any) -> None:
    token = csrf_of(await carol.get("/admin"))
    old_cookie = carol.cookies.get("broker-admin")
    response = await carol.post("/admin/logout", data={"csrf_token": token})
    assert response.status_code == 303
    carol.cookies.set("broker-admin", old_cookie)  # a copied cookie is dead too
    assert (await carol.get("/admin")).status_code == 302
    with state.database.sessions() as session:
        assert session.scalars(select(AdminSession)).one().ended_at is not None


async def test_idle_and_absolute_timeouts(carol: httpx.AsyncClient, state: Any) -> None:
    import datetime as dt

    with state.database.transaction() as session:
        row = session.scalars(select(AdminSession)).one()
        row.last_seen_at -= dt.timedelta(seconds=state.settings.admin.session_idle_timeout + 1)
    assert (await carol.get("/admin")).status_code == 302
    with state.database.transaction() as session:
        row = session.scalars(select(AdminSession)).one()
        row.last_seen_at = row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert (await carol.get("/admin")).status_code == 302


async def test_simulator_explains_a_decision(carol: httpx.AsyncClient) -> None:
    await sign_in(carol, "carol")
    page = await carol.get("/admin/policies/simulate?user=carol@example.com&server=demo")
    assert page.status_code == 200 and "<strong>Denied</strong>" in page.text
    unknown = await carol.get("/admin/policies/simulate?user=nobody@example.com&server=demo")
    assert 'id="sim-error"' in unknown.text


async def test_client_approve_trust_disable(carol: httpx.AsyncClient, state: Any) -> None:
    pending = register_client(state, name="Pending <b>tool</b>")
    with state.database.transaction() as session:
        from broker.storage.models import Client
        session.get(Client, pending.row.id).status = "pending"
    token = csrf_of(await carol.get("/admin/clients"))
    for action in ("approve", "trust", "disable"):
        response = await carol.post("/admin/clients/action", data={"csrf_token": token, "client_id": pending.row.id,
                                                                   "action": action})
        assert response.status_code == 303, (action, response.text)
    again = await carol.post("/admin/clients/action", data={"csrf_token": token, "client_id": pending.row.id,
                                                            "action": "disable"})
    assert again.status_code == 409
    with state.database.sessions() as session:
        types = list(session.scalars(select(AuditEvent.event_type).where(AuditEvent.client_id == pending.row.id)))
    assert {"client.approved", "client.trust_changed", "client.disabled"} <= set(types)


async def test_audit_filters_pages_and_exports_jsonl(carol: httpx.AsyncClient) -> None:
    page = await carol.get("/admin/audit?type=admin.login")
    assert page.status_code == 200 and "admin.login" in page.text
    export = await carol.get("/admin/audit/export.jsonl?type=admin.login")
    assert export.status_code == 200
    lines = export.text.splitlines()
    assert lines and all('"event_type":"admin.login"' in line for line in lines)


async def test_key_rotation_from_the_console(carol: httpx.AsyncClient, state: Any) -> None:
    page = await carol.get("/admin/keys")
    delay = state.settings.keys.activation_delay
    assert f"signs after {delay} seconds" in page.text
    started = utcnow().replace(microsecond=0)
    assert (await carol.post("/admin/keys/rotate", data={"csrf_token": csrf_of(page)})).status_code == 303
    assert (await carol.get("/admin/keys")).text.count("pending") >= 1
    with state.database.sessions() as session:
        newest = max(signing_keys.list_keys(session, "broker"), key=lambda k: k.created_at)
    window = (started + dt.timedelta(seconds=delay), utcnow() + dt.timedelta(seconds=delay))
    assert window[0] <= newest.activates_at <= window[1]


async def test_settings_mask_secrets(carol: httpx.AsyncClient, state: Any) -> None:
    page = await carol.get("/admin/settings")
    assert "**********" in page.text
    assert state.settings.keys.key_encryption_key.get_secret_value() not in page.text
    assert "carol-pw" not in page.text
