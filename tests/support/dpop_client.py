"""A DPoP client (RFC 9449) for end-to-end tests: sign-in, refresh and MCP calls with DPoP-bound tokens.

The MCP Python SDK (``mcp`` 2.3.0) has no DPoP client (its ``OAuthToken`` even refuses ``token_type:
DPoP``), so this is one on ``tests.support.dpop.DpopKey``:

- ``sign_in``: authorization code + PKCE with ``dpop_jkt`` at ``/authorize`` (§10, the browser's part is
  ``tests.support.http_flow.authorization_code``) and a proof at ``/token`` (§5);
- ``refresh``: the refresh token with a proof by the same key;
- ``token_request``: any ``/token`` request with a proof, retried once with the server's ``DPoP-Nonce``
  when it answers ``use_dpop_nonce`` (§8);
- ``DpopAuth``: an ``httpx2.Auth`` for the SDK's MCP client: ``Authorization: DPoP <token>`` and a fresh
  proof (``htm``, ``htu``, ``ath``) on every request (§7).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx
import httpx2

from tests.support.dpop import DpopKey
from tests.support.http_flow import REDIRECT, authorization_code


def token_request(base: str, data: dict[str, str], key: DpopKey, http: httpx.Client | None = None) -> httpx.Response:
    """POST ``data`` to ``<base>/token`` with a proof by ``key``; once more with a nonce if the server wants one."""
    url = f"{base}/token"
    nonce: str | None = None
    post = http.post if http is not None else httpx.post
    while True:
        response = post(url, data=data, headers={"DPoP": key.proof("POST", url, nonce=nonce)}, timeout=10)
        wants_nonce = response.status_code == 400 and response.json().get("error") == "use_dpop_nonce"
        if not wants_nonce or nonce is not None:
            return response
        nonce = response.headers["dpop-nonce"]


def sign_in(base: str, client_id: str, resource: str, username: str, password: str, key: DpopKey,
            redirect: str = REDIRECT) -> dict[str, Any]:
    """A whole sign-in whose code and tokens are bound to ``key``; the token response's JSON."""
    code, verifier = authorization_code(base, client_id, resource, username, password, redirect, dpop_jkt=key.jkt)
    response = token_request(base, {"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                    "redirect_uri": redirect, "code_verifier": verifier, "resource": resource}, key)
    assert response.status_code == 200, response.text
    return response.json()


def refresh(base: str, client_id: str, refresh_token: str, resource: str, key: DpopKey) -> httpx.Response:
    """A refresh with a proof by ``key`` (the answer, to check refusals too)."""
    return token_request(base, {"grant_type": "refresh_token", "refresh_token": refresh_token,
                                "client_id": client_id, "resource": resource}, key)


class DpopAuth(httpx2.Auth):
    """``Authorization: DPoP <access_token>`` with a fresh proof by ``key`` on every request (RFC 9449 §7)."""

    def __init__(self, key: DpopKey, access_token: str):
        self.key = key
        self.access_token = access_token
        self.proofs_sent = 0

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        htu = str(request.url.copy_with(query=None, fragment=None))  # §4.2: htu has no query or fragment
        request.headers["Authorization"] = f"DPoP {self.access_token}"
        request.headers["DPoP"] = self.key.proof(request.method, htu, access_token=self.access_token)
        self.proofs_sent += 1
        yield request
