"""A sign-in over real HTTP against a running broker whose upstream IdP is its built-in test IdP.

The browser's part (``/authorize``, the test IdP's form, the callback, the consent page when the client
is not trusted), then the code's redemption at ``/token``: what an MCP client and its user do.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from tests.support.oauth_flow import _ACTION, hidden_fields, pkce

REDIRECT = "http://127.0.0.1:9/cb"


def register_public_client(base: str, redirect: str = REDIRECT) -> str:
    """Dynamic client registration (RFC 7591) of a public client; returns its client_id."""
    response = httpx.post(f"{base}/register", timeout=10, json={
        "client_name": "e2e client", "redirect_uris": [redirect], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]})
    assert response.status_code == 201, response.text
    return response.json()["client_id"]


def authorization_code(base: str, client_id: str, resource: str, username: str, password: str,
                       redirect: str = REDIRECT, **extra: str) -> tuple[str, str]:
    """The browser's part of a sign-in: a code for ``client_id``, and its PKCE verifier. ``extra``: more
    authorization request parameters (``dpop_jkt=...``)."""
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "state": "s",
              "code_challenge": challenge, "code_challenge_method": "S256", "resource": resource, **extra}
    with httpx.Client(base_url=base, timeout=10) as browser:
        response = browser.get("/authorize?" + urlencode(params))
        assert response.status_code == 302, response.text
        form_page = browser.get(response.headers["location"])
        assert form_page.status_code == 200, form_page.text
        fields = {**hidden_fields(form_page.text), "username": username, "password": password}
        response = browser.post(_ACTION.search(form_page.text).group(1), data=fields)
        response = browser.get(response.headers["location"])
        location = response.headers["location"]
        if urlsplit(location).path == "/consent":
            page = browser.get(location)
            assert page.status_code == 200, page.text
            response = browser.post("/consent", data={**hidden_fields(page.text), "decision": "approve"})
            location = response.headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert "code" in query, location
    return query["code"][0], verifier


def sign_in(base: str, client_id: str, resource: str, username: str, password: str,
            redirect: str = REDIRECT) -> dict[str, Any]:
    """A whole sign-in: the token response's JSON."""
    code, verifier = authorization_code(base, client_id, resource, username, password, redirect)
    response = httpx.post(f"{base}/token", timeout=10, data={
        "grant_type": "authorization_code", "code": code, "client_id": client_id, "redirect_uri": redirect,
        "code_verifier": verifier, "resource": resource})
    assert response.status_code == 200, response.text
    return response.json()
