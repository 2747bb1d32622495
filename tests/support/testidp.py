"""Drive the built-in test IdP as a browser and a relying party would (shared by flow tests)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt

from tests.conftest import ISSUER, TESTIDP_CLIENT

TESTIDP = f"{ISSUER}/testidp"
CLIENT_ID = TESTIDP_CLIENT["client_id"]
CLIENT_SECRET = TESTIDP_CLIENT["client_secret"]
REDIRECT_URI = TESTIDP_CLIENT["redirect_uris"][0]
VERIFIER = "flow-verifier-" + "x" * 40
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
BASIC = httpx.BasicAuth(CLIENT_ID, CLIENT_SECRET)
FORM = {"content-type": "application/x-www-form-urlencoded"}
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def authorize_params(**overrides: str | None) -> dict[str, str]:
    params = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
              "scope": "openid email profile groups offline_access", "state": "flow-state",
              "nonce": "flow-nonce", "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    params.update(overrides)  # type: ignore[arg-type]
    return {k: v for k, v in params.items() if v is not None}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def login_form(client: httpx.AsyncClient, **overrides: str | None) -> dict[str, str]:
    """GET the authorization endpoint; the login form's hidden fields."""
    response = await client.get("/testidp/authorize", params=authorize_params(**overrides))
    assert response.status_code == 200, response.text
    assert "Test identity provider — development only" in response.text
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(response.text)}


async def log_in(client: httpx.AsyncClient, username: str = "alice", password: str = "alice-pw",
                 **overrides: str | None) -> dict[str, str]:
    """The whole browser part: form, credentials, redirect back; the redirect's parameters."""
    fields = await login_form(client, **overrides)
    response = await client.post("/testidp/authorize", data={**fields, "username": username, "password": password})
    assert response.status_code == 302, response.text
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    return query_of(response.headers["location"])


async def redeem(client: httpx.AsyncClient, code: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER, **extra}
    return await client.post("/testidp/token", data=data, auth=BASIC)


async def verify_with_jwks(client: httpx.AsyncClient, token: str, audience: str) -> dict[str, Any]:
    """Verify a JWT the way a relying party does: key from the published JWKS by ``kid``."""
    jwks = (await client.get("/testidp/jwks")).json()
    kid = jwt.get_unverified_header(token)["kid"]
    [jwk] = [k for k in jwks["keys"] if k["kid"] == kid]
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["ES256"], audience=audience, issuer=TESTIDP)


def assert_token_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


# ---------------------------------------------------------------- discovery
