"""The admin console in a real browser (Debian's Chromium via Playwright) against `broker dev` as a process.

Carol (groups it-admins, security) signs in through the test IdP's login form, registers an MCP server,
adds a policy rule by import, simulates a decision, and offboards bob after he logged in through an MCP
client; alice (no console group) is refused, and a form without its CSRF token changes nothing.
Screenshots of every page land in tests/artifacts/admin-*.png.
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
              'servers = ["demo"]\n')


@pytest.fixture
def broker(tmp_path: Path):
    require_chromium()
    server = ServerProcess([*BROKER, "dev", "--port", "{port}", "--data-dir", str(tmp_path / "state")], env={},
                           log_path=tmp_path / "dev.log", cwd=tmp_path)
    with server:
        yield server


def mcp_login(issuer: str, username: str) -> dict:
    """An MCP client's login as ``username`` over plain HTTP (DCR, PKCE, the test IdP, consent); the tokens."""
    with httpx.Client(base_url=issuer, timeout=10) as http:
        client_id = http.post("/register", json={"redirect_uris": [REDIRECT], "client_name": "e2e MCP client",
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
        code = parse_qs(urlsplit(location).query)["code"][0]
        tokens = http.post("/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                           "redirect_uri": REDIRECT, "code_verifier": verifier,
                                           "resource": f"{issuer}/demo/mcp"})
        assert tokens.status_code == 200, tokens.text
        return {**tokens.json(), "client_id": client_id}


def sign_in(page, issuer: str, username: str) -> None:
    page.goto(f"{issuer}/admin")
    page.click("#signin-test")
    page.fill("#username", username)
    page.fill("#password", "demo")
    page.click("button[type=submit]")


def test_carol_runs_the_console_in_chromium(broker: ServerProcess, tmp_path: Path) -> None:
    issuer = broker.base_url
    with chromium(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(f"{issuer}/admin/login")
        screenshot(page, "admin-01-sign-in")
        sign_in(page, issuer, "carol")
        page.wait_for_url(f"{issuer}/admin")
        assert page.text_content("#who") == "carol@example.com"
        screenshot(page, "admin-02-dashboard")

        # an MCP server, through the form (a mistake first: the form keeps what was typed)
        page.goto(f"{issuer}/admin/servers/new")
        page.fill("#id", "crm")
        page.fill("#name", "CRM")
        page.fill("#resource", "not a url")
        page.fill("#scopes", "crm:read Read accounts\ncrm:write Change accounts")
        page.click("#save")
        assert page.is_visible("#error-resource") and page.input_value("#name") == "CRM"
        screenshot(page, "admin-03-server-form-errors")
        page.fill("#resource", "https://crm.example.com/mcp")
        page.click("#save")
        page.wait_for_selector("#saved")
        page.goto(f"{issuer}/admin/servers")
        assert "crm.example.com" in page.text_content("#servers")
        screenshot(page, "admin-04-servers")

        # a policy rule, reviewed first (the editor cannot apply)
        page.goto(f"{issuer}/admin/policies/edit")
        page.fill("#document", DEV_POLICY + SALES_RULE)
        page.fill("#comment", "sales may read the demo server")
        page.click("#review-button")
        assert "sales-crm" in page.text_content("#rule-changes")
        screenshot(page, "admin-05-policy-review")
        page.click("#apply")
        page.wait_for_selector("#done")
        assert "sales-crm" in page.text_content("#rules")

        # bob signs in through an MCP client: he now holds a live session
        bob_tokens = mcp_login(issuer, "bob")
        page.goto(f"{issuer}/admin/policies")
        page.fill("#sim-user", "bob@example.com")
        page.select_option("#sim-server", "demo")
        page.click("#simulate")
        assert "Allowed" in page.text_content("#decision")
        screenshot(page, "admin-06-policy-simulator")

        page.goto(f"{issuer}/admin/users?q=bob")
        page.click("text=bob@example.com")
        assert not page.is_visible("#no-families")
        screenshot(page, "admin-07-user")
        page.click("#offboard")
        page.fill("#reason", "left the company")
        page.fill("#confirm", "bob@example.com")
        screenshot(page, "admin-08-offboard-confirm")
        page.click("#confirm-offboard")
        page.wait_for_selector("#done")
        assert page.is_visible("#no-families") and "offboarded" in page.text_content("#user-status")
        refreshed = httpx.post(f"{issuer}/token", data={
            "grant_type": "refresh_token", "client_id": bob_tokens["client_id"],
            "refresh_token": bob_tokens["refresh_token"], "resource": f"{issuer}/demo/mcp"})
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"

        for name in ("clients", "audit", "keys", "settings", "users"):
            page.goto(f"{issuer}/admin/{name}")
            screenshot(page, f"admin-09-{name}")
        page.goto(f"{issuer}/admin/audit/verify")
        assert "Intact" in page.text_content("#chain-status")

        # a form stripped of its CSRF token is refused, and nothing changes
        page.goto(f"{issuer}/admin/servers/demo")
        page.eval_on_selector_all("input[name=csrf_token]", "inputs => inputs.forEach(i => i.remove())")
        page.click("#toggle-enabled")
        assert "CSRF" in page.text_content("#problem-title")
        screenshot(page, "admin-10-csrf-refused")
        page.goto(f"{issuer}/admin/servers/demo")
        assert page.text_content("#server-status") == "enabled"

        # alice has no console group
        page.click("#logout")
        context.clear_cookies()
        sign_in(page, issuer, "alice")
        page.wait_for_selector("#problem-title")
        assert page.text_content("#problem-title") == "No access to the admin console"
        screenshot(page, "admin-11-alice-refused")
        page.goto(f"{issuer}/admin")
        assert "/admin/login" in page.url
