"""The whole authorization-code flow through the ASGI app, on both stores."""

from __future__ import annotations

import httpx
import jwt

from tests.conftest import ISSUER
from tests.support.oauth_flow import (
    CLIENT_REDIRECT,
    DEMO_RESOURCE,
    authorize,
    exchange,
    pkce,
    refresh,
    register_client,
    tokens_for,
)


async def verify_access_token(http: httpx.AsyncClient, token: str) -> dict:
    header = jwt.get_unverified_header(token)
    [jwk] = [k for k in (await http.get("/jwks")).json()["keys"] if k["kid"] == header["kid"]]
    assert header["typ"] == "at+jwt"
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["ES256"], audience=DEMO_RESOURCE, issuer=ISSUER)


async def test_code_flow_with_consent_then_refresh(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    verifier, challenge = pkce()
    redirect = await authorize(client, new.row.id, challenge)
    assert redirect["state"] == "client-state-1" and redirect["iss"] == ISSUER
    assert redirect["location"].startswith(CLIENT_REDIRECT + "?")
    response = await exchange(client, new.row.id, redirect["code"], verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "tools:call tools:read"
    claims = await verify_access_token(client, body["access_token"])
    assert claims["aud"] == DEMO_RESOURCE and claims["client_id"] == new.row.id
    assert claims["scope"] == "tools:call tools:read" and claims["email"] == "alice@example.com"
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"]
    refreshed = await refresh(client, new.row.id, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != body["refresh_token"]


async def test_second_authorization_skips_consent(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    await tokens_for(client, new.row.id)
    _, challenge = pkce()
    redirect = await authorize(client, new.row.id, challenge, approve=None)
    assert "code" in redirect


async def test_trusted_client_never_sees_consent(client: httpx.AsyncClient, state) -> None:
    new = register_client(state, trusted=True)
    _, challenge = pkce()
    assert "code" in await authorize(client, new.row.id, challenge, approve=None)


async def test_denied_consent_is_access_denied_with_iss(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    _, challenge = pkce()
    redirect = await authorize(client, new.row.id, challenge, approve=False)
    assert redirect["error"] == "access_denied" and redirect["iss"] == ISSUER and redirect["state"] == "client-state-1"


async def test_confidential_client_authenticates_with_its_secret(client: httpx.AsyncClient, state) -> None:
    new = register_client(state, auth_method="client_secret_basic")
    body = await tokens_for(client, new.row.id, secret=new.secret)
    assert body["access_token"]
    refreshed = await refresh(client, new.row.id, body["refresh_token"], secret=new.secret)
    assert refreshed.status_code == 200
    wrong = await refresh(client, new.row.id, refreshed.json()["refresh_token"], secret="wrong")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


async def test_introspection_by_a_resource_server(client: httpx.AsyncClient, state) -> None:
    user_client = register_client(state)
    rs = register_client(state, name="Demo RS", auth_method="client_secret_basic", redirect_uris=[],
                         grant_types=("client_credentials",), may_introspect=True)
    body = await tokens_for(client, user_client.row.id)
    answer = (await client.post("/introspect", data={"token": body["access_token"]},
                                auth=(rs.row.id, rs.secret))).json()
    assert answer["active"] is True and answer["aud"] == DEMO_RESOURCE and answer["username"] == "alice@example.com"
    await client.post("/revoke", data={"token": body["refresh_token"], "client_id": user_client.row.id})
    after = (await client.post("/introspect", data={"token": body["access_token"]}, auth=(rs.row.id, rs.secret)))
    assert after.json() == {"active": False}


async def test_introspection_requires_a_resource_server_client(client: httpx.AsyncClient, state) -> None:
    other = register_client(state, auth_method="client_secret_basic")
    body = await tokens_for(client, other.row.id, secret=other.secret)
    answer = await client.post("/introspect", data={"token": body["access_token"]}, auth=(other.row.id, other.secret))
    assert answer.json() == {"active": False}


async def test_discovery_document(client: httpx.AsyncClient) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        response = await client.get(path)
        doc = response.json()
        assert doc["issuer"] == ISSUER and response.headers["access-control-allow-origin"] == "*"
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert doc["authorization_response_iss_parameter_supported"] is True
        assert doc["registration_endpoint"] == f"{ISSUER}/register"
        assert {"tools:read", "tools:call"} <= set(doc["scopes_supported"])
        assert doc["client_id_metadata_document_supported"] is True  # CIMD (issue 4)
