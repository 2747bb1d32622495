"""The admin console in a real browser (Debian's Chromium via Playwright) against `broker dev` as a process,
on SQLite and on PostgreSQL.

Carol (groups it-admins, security) signs in through the test IdP's login form, registers an MCP server,
changes the policy through its review, looks at who can reach what, simulates a new hire, revokes one of
alice's sessions, offboards bob, searches the audit log and its denials, reads the settings and reviews a
rollback; alice (no console group) is refused, and a form without its CSRF token changes nothing.
Screenshots of every page land in tests/artifacts/admin-<store>-*.png.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest

from broker.dev import DEV_POLICY
from tests.support.browser import chromium, require_chromium, screenshot
from tests.support.oauth_flow import hidden_fields
from tests.support.processes import BROKER, ServerProcess

pytestmark = pytest.mark.e2e
REDIRECT = "http://127.0.0.1:9/callback"
SALES_RULE = ('\n[[rules]]\nid = "sales-crm"\ndescription = "Sales may read the demo server"\neffect = "allow"\n'
              'scopes = ["tools:read"]\n\n[rules.subjects]\ngroups = ["sales"]\n\n[rules.targets]\n'
              'servers = ["demo"]\n\n[[rules]]\nid = "no-crm-for-security"\neffect = "deny"\nscopes = "*"\n\n'
              '[rules.subjects]\ngroups = ["security"]\n\n[rules.targets]\ntags = ["sales"]\n')


@pytest.fixture
def broker(tmp_path: Path, database_url: str):
    require_chromium()
    server = ServerProcess([*BROKER, "dev", "--port", "{port}", "--data-dir", str(tmp_path / "state")],
                           env={"BROKER_DATABASE__URL": database_url}, log_path=tmp_path / "dev.log", cwd=tmp_path)
    with server:
        yield server


def mcp_login(issuer: str, username: str, client_name: str = "e2e MCP client") -> dict:
    """An MCP client's login as ``username`` over plain HTTP (DCR, PKCE, the test IdP, consent): the final
    redirect's parameters, with the tokens when a code came back."""
    with httpx.Client(base_url=issuer, timeout=10) as http:
        client_id = http.post("/register", json={"redirect_uris": [REDIRECT], "client_name": client_name,
                                                 "grant_types": ["authorization_code", "refresh_token"],
                                                 "token_endpoint_auth_method": "none"}).json()["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        location = "/authorize?" + urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "code_challenge": challenge,
            "code_challenge_method": "S256", "resource": f"{issuer}/demo/mcp", "state": "s"})
        while not location.startswith(REDIRECT):
            response = http.get(location)
            if response.status_code == 200 and "/testidp/" in str(response.url):
                action = re.search(r'<form method="post" action="([^"]+)"', response.text).group(1)
                response = http.post(urljoin(str(response.url), action), data={
                    **hidden_fields(response.text), "username": username, "password": "demo"})
            elif response.status_code == 200 and 'action="/consent"' in response.text:
                response = http.post("/consent", data={**hidden_fields(response.text), "decision": "approve"})
            assert response.status_code in (302, 303), response.text
            location = response.headers["location"]
        params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        if "code" not in params:
            return params
        tokens = http.post("/token", data={"grant_type": "authorization_code", "code": params["code"],
                                           "client_id": client_id, "redirect_uri": REDIRECT,
                                           "code_verifier": verifier, "resource": f"{issuer}/demo/mcp"})
        assert tokens.status_code == 200, tokens.text
        return {**tokens.json(), "client_id": client_id}


def refresh(issuer: str, tokens: dict) -> httpx.Response:
    return httpx.post(f"{issuer}/token", data={"grant_type": "refresh_token", "client_id": tokens["client_id"],
                                               "refresh_token": tokens["refresh_token"],
                                               "resource": f"{issuer}/demo/mcp"})


def sign_in(page, issuer: str, username: str) -> None:
    page.goto(f"{issuer}/admin")
    page.click("#signin-test")
    page.fill("#username", username)
    page.fill("#password", "demo")
    page.click("button[type=submit]")


def test_carol_runs_the_console_in_chromium(broker: ServerProcess, tmp_path: Path, database_url: str) -> None:
    issuer, store = broker.base_url, "sqlite" if database_url.startswith("sqlite") else "postgresql"

    def shot(page, name: str) -> None:
        screenshot(page, f"admin-{store}-{name}")

    with chromium(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(f"{issuer}/admin/login")
        shot(page, "01-sign-in")
        sign_in(page, issuer, "carol")
        page.wait_for_url(f"{issuer}/admin")
        assert page.text_content("#who") == "carol@example.com"

        # an MCP server, through the form (a mistake first: the form keeps what was typed)
        page.goto(f"{issuer}/admin/servers/new")
        page.fill("#id", "crm")
        page.fill("#name", "CRM")
        page.fill("#resource", "not a url")
        page.fill("#scopes", "crm:read Read accounts\ncrm:write Change accounts")
        page.fill("#tags", "sales")
        page.click("#save")
        assert page.is_visible("#error-resource") and page.input_value("#name") == "CRM"
        shot(page, "02-server-form-errors")
        page.fill("#resource", "https://crm.example.com/mcp")
        page.click("#save")
        page.wait_for_selector("#saved")
        page.goto(f"{issuer}/admin/servers")
        assert "crm.example.com" in page.text_content("#servers")
        shot(page, "03-servers")

        # a policy change goes through its review: the editor cannot apply
        page.goto(f"{issuer}/admin/policies/edit")
        assert page.locator("#apply").count() == 0
        page.fill("#document", DEV_POLICY + SALES_RULE)
        page.fill("#comment", "sales may read the demo server")
        shot(page, "04-policy-editor")
        page.click("#review-button")
        assert "sales-crm" in page.text_content("#rule-changes")
        assert "sales" in page.text_content("#subject-changes") and "gains" in page.text_content("#subject-changes")
        shot(page, "05-policy-review")
        page.click("#apply")
        page.wait_for_selector("#done")
        assert "groups sales" in page.text_content("#rule-sales-crm")
        page.click("#rule-sales-crm details.toml summary")  # the TOML, one click away
        assert page.is_visible("#rule-sales-crm pre")
        shot(page, "06-policies")

        # MCP users: bob now reaches the demo, alice holds two sessions, carol is denied
        bob = mcp_login(issuer, "bob")
        laptop = mcp_login(issuer, "alice", "Laptop assistant")
        desktop = mcp_login(issuer, "alice", "Desktop assistant")
        assert mcp_login(issuer, "carol")["error"] == "access_denied"

        page.goto(f"{issuer}/admin/access")
        cell = page.locator("#matrix tr", has_text="sales").locator('td[data-server="demo"]')
        assert "tools:read" in cell.text_content() and "sales-crm" in cell.text_content()
        denied = page.locator("#matrix tr", has_text="security").locator('td[data-server="crm"]')
        assert "denied" in denied.text_content() and "no-crm-for-security" in denied.text_content()
        shot(page, "07-access")
        page.fill("#f-user", "alice")
        page.click("#filter")
        assert "Alice" in page.text_content("#matrix")
        shot(page, "08-access-users")
        exported = page.request.get(f"{issuer}/admin/access.csv?server=demo")
        assert exported.ok and "group,sales,demo,allowed,tools:read,sales-crm" in exported.text()

        page.goto(f"{issuer}/admin/policies")
        page.fill("#sim-groups", "sales")
        page.select_option("#sim-server", "demo")
        page.click("#simulate")
        assert "Allowed" in page.text_content("#decision") and "sales-crm" in page.text_content("#decision")
        shot(page, "09-simulator-new-hire")

        # one of alice's sessions is revoked; the other lives on
        page.goto(f"{issuer}/admin/users?q=alice")
        page.click("text=alice@example.com")
        assert "Laptop assistant" in page.text_content("#families")
        shot(page, "10-user")
        page.click("#families tr:has-text('Laptop assistant') a.button")
        shot(page, "11-session-revoke-confirm")
        page.fill("#reason", "laptop lost")
        page.click("#confirm-revoke")
        page.wait_for_selector("#done")
        assert "Laptop assistant" not in page.text_content("#families")
        assert refresh(issuer, laptop).status_code == 400 and refresh(issuer, desktop).status_code == 200

        # bob is offboarded: his page says he reaches nothing, and why
        page.goto(f"{issuer}/admin/users?q=bob")
        page.click("text=bob@example.com")
        page.click("#offboard")
        page.fill("#reason", "left the company")
        page.fill("#confirm", "bob@example.com")
        shot(page, "12-offboard-confirm")
        page.click("#confirm-offboard")
        page.wait_for_selector("#done")
        assert "offboarded" in page.text_content("#user-status") and page.is_visible("#reach-none")
        assert "left the company" in page.text_content("#reach-none")
        shot(page, "13-offboarded-user")
        assert refresh(issuer, bob).status_code == 400

        page.goto(f"{issuer}/admin")
        assert page.locator("#recent-denials tr").count() == 2  # the header, and one row for one denied sign-in
        assert "Carol Chen" in page.text_content("#recent-denials")
        assert "Bob Brown" in page.text_content("#recent-offboardings")
        shot(page, "14-dashboard")

        page.goto(f"{issuer}/admin/audit")
        page.fill("#f-user", "alice@example.com")
        page.click("#search")
        assert "user.session_revoked" in page.text_content("#events")
        shot(page, "15-audit-search")
        page.goto(f"{issuer}/admin/audit/denials")
        assert page.locator("#events td.event-type").all_text_contents() == ["authorization.failed"]
        shot(page, "16-denials")
        page.goto(f"{issuer}/admin/audit/verify")
        assert "Intact" in page.text_content("#chain-status")
        shot(page, "17-audit-verify")

        page.goto(f"{issuer}/admin/settings")
        assert "broker dev" in page.text_content("#setting-mode")
        if store == "postgresql":
            assert "environment variable BROKER_DATABASE__URL" in page.text_content("#setting-database\\.url")
        shot(page, "18-settings")
        page.click("#changed-only")
        shot(page, "19-settings-changed")
        for name in ("clients", "keys"):
            page.goto(f"{issuer}/admin/{name}")
            shot(page, f"20-{name}")

        page.goto(f"{issuer}/admin/policies")
        page.click("#history button")  # review the rollback to version 1
        assert "roll back to version 1" in page.text_content("h1")
        shot(page, "21-rollback-review")

        # a form stripped of its CSRF token is refused, and nothing changes
        page.goto(f"{issuer}/admin/servers/demo")
        page.eval_on_selector_all("input[name=csrf_token]", "inputs => inputs.forEach(i => i.remove())")
        page.click("#toggle-enabled")
        assert "CSRF" in page.text_content("#problem-title")
        shot(page, "22-csrf-refused")
        page.goto(f"{issuer}/admin/servers/demo")
        assert page.text_content("#server-status") == "enabled"

        # alice has no console group
        page.click("#logout")
        context.clear_cookies()
        sign_in(page, issuer, "alice")
        page.wait_for_selector("#problem-title")
        assert page.text_content("#problem-title") == "No access to the admin console"
        shot(page, "23-alice-refused")
        page.goto(f"{issuer}/admin")
        assert "/admin/login" in page.url
