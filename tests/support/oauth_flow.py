"""Drive the broker's authorization flow in-process, as an MCP client and its user's browser would."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from broker.oauth import clients
from tests.conftest import ISSUER

DEMO_RESOURCE = f"{ISSUER}/demo/mcp"
CLIENT_REDIRECT = "http://127.0.0.1:9999/callback"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register_client(state: Any, *, name: str = "Test MCP client", auth_method: str | tuple[str, ...] = "none",
                    redirect_uris: list[str] | None = None, trusted: bool = False,
                    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token"),
                    scopes: tuple[str, ...] = (), may_introspect: bool = False, kind: str = "preregistered",
                    resource_servers: tuple[str, ...] | None = None,
                    jwks: dict | None = None, jwks_uri: str | None = None) -> clients.NewClient:
    """A stored client; ``auth_method`` is one method or several (``clients.auth_setup``). An introspecting
    client introspects the demo server's tokens unless ``resource_servers`` names others (or none)."""
    methods = (auth_method,) if isinstance(auth_method, str) else auth_method
    with state.database.transaction() as session:
        return clients.register(session, name=name, kind=kind,
                                auth=clients.auth_setup(methods, jwks=jwks, jwks_uri=jwks_uri),
                                redirect_uris=[CLIENT_REDIRECT] if redirect_uris is None else redirect_uris,
                                trusted=trusted, grant_types=grant_types, scopes=scopes,
                                may_introspect=may_introspect,
                                resource_servers=(("demo",) if may_introspect else ()) if resource_servers is None
                                else resource_servers)


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


def local(url: str) -> str:
    """A broker URL as a path for the in-process client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def authorize_params(client_id: str, challenge: str, **overrides: str | None) -> dict[str, str]:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": CLIENT_REDIRECT,
              "code_challenge": challenge, "code_challenge_method": "S256", "resource": DEMO_RESOURCE,
              "state": "client-state-1"}
    params.update(overrides)  # type: ignore[arg-type]
    return {k: v for k, v in params.items() if v is not None}


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


async def sign_in_upstream(http: httpx.AsyncClient, location: str, username: str) -> httpx.Response:
    """At the test IdP: show the form, post the credentials; the response redirects to the broker's callback."""
    form_page = await http.get(local(location))
    assert form_page.status_code == 200, form_page.text
    fields = {**hidden_fields(form_page.text), "username": username, "password": PASSWORDS[username]}
    response = await http.post(local(_ACTION.search(form_page.text).group(1)), data=fields)
    assert response.status_code == 302, response.text
    return response


async def authorize(http: httpx.AsyncClient, client_id: str, challenge: str, *, username: str = "alice",
                    approve: bool | None = True, **overrides: str | None) -> dict[str, str]:
    """The whole browser trip; returns the parameters of the redirect to the client (code or error)."""
    response = await http.get("/authorize?" + urlencode(authorize_params(client_id, challenge, **overrides)))
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    if location.startswith(f"{ISSUER}/testidp/"):
        callback = await sign_in_upstream(http, location, username)
        response = await http.get(local(callback.headers["location"]))
        assert response.status_code == 302, response.text
        location = response.headers["location"]
    if location.startswith("/consent") and approve is not None:
        page = await http.get(location)
        assert page.status_code == 200, page.text
        fields = {**hidden_fields(page.text), "decision": "approve" if approve else "deny"}
        response = await http.post("/consent", data=fields)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
    return {"location": location, **query(location)}


async def exchange(http: httpx.AsyncClient, client_id: str, code: str, verifier: str | None, *,
                   secret: str | None = None, resource: str | None = DEMO_RESOURCE,
                   redirect_uri: str = CLIENT_REDIRECT, headers: dict[str, str] | None = None,
                   **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "client_id": client_id,
            "code_verifier": verifier, "resource": resource, **extra}
    return await http.post("/token", data={k: v for k, v in data.items() if v is not None},
                           auth=(client_id, secret) if secret else None, headers=headers)


async def refresh(http: httpx.AsyncClient, client_id: str, refresh_token: str, *, secret: str | None = None,
                  resource: str | None = DEMO_RESOURCE, headers: dict[str, str] | None = None,
                  **extra: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id,
            "resource": resource, **extra}
    return await http.post("/token", data={k: v for k, v in data.items() if v is not None},
                           auth=(client_id, secret) if secret else None, headers=headers)


async def tokens_for(http: httpx.AsyncClient, client_id: str, *, username: str = "alice",
                     secret: str | None = None) -> dict[str, Any]:
    verifier, challenge = pkce()
    redirect = await authorize(http, client_id, challenge, username=username)
    assert "code" in redirect, redirect
    response = await exchange(http, client_id, redirect["code"], verifier, secret=secret)
    assert response.status_code == 200, response.text
    return response.json()


def allow_clients(state: Any, *client_ids: str, server: str = "demo") -> None:
    """Add a policy rule letting these clients reach ``server`` for themselves (client credentials)."""
    from broker.dev import DEV_POLICY
    from broker.registry import policies

    rule = (f'\n[[rules]]\nid = "machines-{server}"\neffect = "allow"\nscopes = "*"\n\n[rules.subjects]\n'
            f'clients = {list(client_ids)!r}\n\n[rules.targets]\nservers = ["{server}"]\n').replace("'", '"')
    with state.database.transaction() as session:
        policies.import_policy(session, DEV_POLICY + rule, issuer=state.settings.issuer, author="test")
