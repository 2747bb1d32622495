"""The broker as an OpenID Provider for its own clients: ID tokens, resource-less sign-in, UserInfo.

Whole flows through the ASGI app, on both stores: the client asks for ``openid`` (with or without an
MCP server), the user signs in at the test IdP, and the token endpoint answers with an ID token;
a sign-in's access token (``aud`` = ``<issuer>/userinfo``) is good at ``/userinfo`` and nowhere else.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from broker.lifecycle import offboarding
from broker.oauth.id_tokens import IdTokenRejected
from broker.oauth.tokens import AccessTokenFacts
from broker.registry import servers
from broker.storage import grants
from broker.storage.models import AuthorizationCode, utcnow
from tests.conftest import ISSUER
from tests.support.oauth_flow import (
    DEMO_RESOURCE,
    authorize,
    authorize_params,
    exchange,
    pkce,
    query,
    refresh,
    register_client,
    tokens_for,
)

USERINFO = f"{ISSUER}/userinfo"


async def verified(http: httpx.AsyncClient, token: str, audience: str, typ: str) -> dict[str, Any]:
    """A JWT checked against the broker's published JWKS, as a relying party would."""
    header = jwt.get_unverified_header(token)
    [jwk] = [k for k in (await http.get("/jwks")).json()["keys"] if k["kid"] == header["kid"]]
    assert header["typ"] == typ
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]], audience=audience, issuer=ISSUER)


def left_half_sha256(value: str) -> str:
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def openid_tokens(http: httpx.AsyncClient, client_id: str, scope: str, *, resource: str | None = DEMO_RESOURCE,
                        username: str = "alice", **extra: str) -> dict[str, Any]:
    verifier, challenge = pkce()
    redirect = await authorize(http, client_id, challenge, username=username, scope=scope, resource=resource, **extra)
    assert "code" in redirect, redirect
    response = await exchange(http, client_id, redirect["code"], verifier, resource=resource)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- ID tokens at the token endpoint


async def test_id_token_comes_with_openid_and_not_without(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    assert "id_token" not in await tokens_for(client, new.row.id)
    body = await openid_tokens(client, new.row.id, "openid tools:read", nonce="n-0S6_WzA2Mj")
    assert body["scope"] == "tools:read"  # the OIDC scopes are not MCP server scopes
    access = await verified(client, body["access_token"], DEMO_RESOURCE, "at+jwt")
    claims = await verified(client, body["id_token"], new.row.id, "JWT")
    assert claims["iss"] == ISSUER and claims["aud"] == new.row.id and claims["azp"] == new.row.id
    assert claims["sub"] == access["sub"]  # one subject for the user, in every token
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["at_hash"] == left_half_sha256(body["access_token"])
    assert claims["exp"] - claims["iat"] == state.settings.tokens.id_token_lifetime
    assert claims["auth_time"] <= claims["iat"]
    assert "email" not in claims and "name" not in claims


async def test_id_token_claims_follow_the_oidc_scopes(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "openid email")
    claims = await verified(client, body["id_token"], new.row.id, "JWT")
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True  # the test IdP verifies
    assert "name" not in claims and "nonce" not in claims  # no nonce asked for, none made up
    body = await openid_tokens(client, new.row.id, "profile openid")
    claims = await verified(client, body["id_token"], new.row.id, "JWT")
    assert claims["name"] == "Alice Anders" and "email" not in claims


async def test_profile_and_email_without_openid_release_nothing(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "profile email tools:read")
    assert "id_token" not in body and body["scope"] == "tools:read"


async def test_refresh_of_an_openid_family_returns_a_new_id_token(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "openid email", nonce="first-nonce")
    first = await verified(client, body["id_token"], new.row.id, "JWT")
    refreshed = await refresh(client, new.row.id, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    again = await verified(client, refreshed.json()["id_token"], new.row.id, "JWT")
    # OIDC Core §12.2: same iss, sub, aud, auth_time; no nonce; at_hash of the new access token
    assert {k: again[k] for k in ("iss", "sub", "aud", "auth_time")} == {k: first[k] for k in
                                                                          ("iss", "sub", "aud", "auth_time")}
    assert "nonce" not in again and again["email"] == "alice@example.com"
    assert again["at_hash"] == left_half_sha256(refreshed.json()["access_token"])
    plain = await tokens_for(client, new.row.id)
    assert "id_token" not in (await refresh(client, new.row.id, plain["refresh_token"])).json()


async def test_the_broker_verifies_its_own_id_tokens(client: httpx.AsyncClient, state) -> None:
    new, other = register_client(state), register_client(state)
    id_token = (await openid_tokens(client, new.row.id, "openid"))["id_token"]
    server = state.oauth.engine
    with state.database.sessions() as session:
        claims = server.id_tokens.verify(session, id_token, client_id=new.row.id, now=utcnow(),
                                         jwks_grace=state.keyring.grace)
        assert claims["aud"] == new.row.id
        try:
            server.id_tokens.verify(session, id_token, client_id=other.row.id, now=utcnow(),
                                    jwks_grace=state.keyring.grace)
        except IdTokenRejected as exc:
            assert "another client" in exc.description and id_token not in exc.description
        else:
            raise AssertionError("an ID token for another client was accepted")


# ---------------------------------------------------------------- sign-in without an MCP server


async def test_sign_in_without_resource_gets_a_userinfo_token(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "openid email", resource=None, nonce="abc")
    assert body["scope"] == "email openid" and body["refresh_token"]
    access = await verified(client, body["access_token"], USERINFO, "at+jwt")
    assert access["scope"] == "email openid" and access["client_id"] == new.row.id
    claims = await verified(client, body["id_token"], new.row.id, "JWT")
    assert claims["nonce"] == "abc" and claims["sub"] == access["sub"]
    for method in ("GET", "POST"):
        answer = await client.request(method, "/userinfo", headers=bearer(body["access_token"]))
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        assert answer.json() == {"sub": access["sub"], "email": "alice@example.com", "email_verified": True}
    refreshed = await refresh(client, new.row.id, body["refresh_token"], resource=None)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "email openid" and "id_token" in refreshed.json()
    answer = await client.get("/userinfo", headers=bearer(refreshed.json()["access_token"]))
    assert answer.status_code == 200 and answer.json()["sub"] == access["sub"]


async def test_userinfo_releases_name_only_for_profile(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "openid profile", resource=None)
    answer = await client.get("/userinfo", headers=bearer(body["access_token"]))
    assert set(answer.json()) == {"sub", "name"} and answer.json()["name"] == "Alice Anders"


async def test_sign_in_consent_page_names_no_mcp_server(client: httpx.AsyncClient, state) -> None:
    new = register_client(state, name="Calendar app")
    _, challenge = pkce()
    redirect = await authorize(client, new.row.id, challenge, scope="openid email", resource=None, approve=None)
    page = await client.get(redirect["location"])
    assert page.status_code == 200, page.text
    assert "Sign-in (OpenID Connect)" in page.text and "sign you in" in page.text
    assert "See your email address" in page.text and "MCP server:" not in page.text
    assert USERINFO not in page.text


async def test_every_active_user_may_sign_in(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    _, challenge = pkce()  # bob (sales) reaches no MCP server under the dev policy
    denied = await authorize(client, new.row.id, challenge, username="bob", scope="openid tools:read")
    assert denied["error"] == "access_denied"
    body = await openid_tokens(client, new.row.id, "openid", resource=None, username="bob")
    assert (await client.get("/userinfo", headers=bearer(body["access_token"]))).status_code == 200


async def test_without_resource_and_without_openid_is_invalid_target(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    for scope in ("tools:read", "profile email", None):
        response = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, "x" * 43, resource=None,
                                                                                scope=scope)))
        assert response.status_code == 302
        assert query(response.headers["location"])["error"] == "invalid_target", scope


async def test_sign_in_refuses_mcp_server_scopes(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    response = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, "x" * 43, resource=None,
                                                                            scope="openid tools:read")))
    assert query(response.headers["location"])["error"] == "invalid_scope"


async def test_a_client_cannot_name_the_userinfo_endpoint_as_resource(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    for resource in (USERINFO, f"{USERINFO}/"):
        response = await client.get("/authorize?" + urlencode(authorize_params(
            new.row.id, "x" * 43, resource=resource, scope="openid")))
        assert query(response.headers["location"])["error"] == "invalid_target", resource
    verifier, challenge = pkce()
    redirect = await authorize(client, new.row.id, challenge)
    swapped = await exchange(client, new.row.id, redirect["code"], verifier, resource=USERINFO)
    assert swapped.status_code == 400 and swapped.json()["error"] == "invalid_target"
    machine = register_client(state, auth_method="client_secret_basic", grant_types=("client_credentials",),
                              scopes=("openid",))
    response = await client.post("/token", data={"grant_type": "client_credentials", "resource": USERINFO,
                                                 "scope": "openid"}, auth=(machine.row.id, machine.secret))
    assert response.status_code == 400 and response.json()["error"] == "invalid_target"


async def test_an_mcp_code_without_resource_is_refused_and_spent(client: httpx.AsyncClient, state) -> None:
    """Only a sign-in's code may be redeemed without ``resource``; an MCP server's code presented without one
    fails, and, as every failed redemption, burns the code (docs/security.md §4.4)."""
    new = register_client(state)
    verifier, challenge = pkce()
    redirect = await authorize(client, new.row.id, challenge, scope="openid")
    missing = await exchange(client, new.row.id, redirect["code"], verifier, resource=None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_target"
    with state.database.sessions() as session:
        assert all(row.used_at is not None for row in session.query(AuthorizationCode).all())
    assert (await exchange(client, new.row.id, redirect["code"], verifier)).json()["error"] == "invalid_grant"


# ---------------------------------------------------------------- the UserInfo endpoint refuses


async def test_an_mcp_server_token_is_refused_at_userinfo(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "openid email")  # openid, but aud is the MCP server
    answer = await client.get("/userinfo", headers=bearer(body["access_token"]))
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert answer.headers["cache-control"] == "no-store"


async def test_userinfo_refuses_an_id_token_as_bearer(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "openid", resource=None)
    answer = await client.get("/userinfo", headers=bearer(body["id_token"]))
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]


async def test_userinfo_without_credentials_or_with_bad_ones(client: httpx.AsyncClient) -> None:
    missing = await client.get("/userinfo")
    assert missing.status_code == 401
    bearer_challenge, dpop_challenge = missing.headers.get_list("www-authenticate")
    assert bearer_challenge == 'Bearer realm="mcp-auth-broker"'  # RFC 6750 §3.1: no error code
    assert dpop_challenge.startswith('DPoP algs="')  # RFC 9449 §7.1: DPoP-bound tokens are taken too
    for header in ("Bearer not-a-jwt", "Bearer a.b.c", "Basic YWxpY2U6cHc="):
        answer = await client.get("/userinfo", headers={"Authorization": header})
        assert answer.status_code == 401, header
    posted = await client.post("/userinfo", data={"access_token": "x.y.z"})  # RFC 6750 §2.2 is not accepted
    assert posted.status_code == 401
    repeated = await client.get("/userinfo", headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")])
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"


async def test_userinfo_token_without_openid_is_insufficient_scope(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "openid", resource=None)
    sub = jwt.decode(body["access_token"], options={"verify_signature": False})["sub"]
    with state.database.transaction() as session:  # a token the grants never issue: no openid in its scope
        issued = state.oauth.engine.access_tokens.issue(session, AccessTokenFacts(
            subject=sub, client_id=new.row.id, server=servers.userinfo(ISSUER), scopes=frozenset({"email"})),
            utcnow())
    answer = await client.get("/userinfo", headers=bearer(issued.token))
    assert answer.status_code == 403 and answer.json()["error"] == "insufficient_scope"
    assert 'scope="openid"' in answer.headers["www-authenticate"]


async def test_offboarded_users_userinfo_token_is_refused(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "openid email", resource=None)
    assert (await client.get("/userinfo", headers=bearer(body["access_token"]))).status_code == 200
    sub = jwt.decode(body["access_token"], options={"verify_signature": False})["sub"]
    with state.database.transaction() as session:
        offboarding.revoke_user(session, sub, reason="left", actor="cli:sec", now=utcnow())
    answer = await client.get("/userinfo", headers=bearer(body["access_token"]))
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_token"
    assert (await refresh(client, new.row.id, body["refresh_token"], resource=None)).status_code == 400


async def test_revoked_userinfo_token_is_refused(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await openid_tokens(client, new.row.id, "openid", resource=None)
    revoked = await client.post("/revoke", data={"token": body["access_token"], "client_id": new.row.id})
    assert revoked.status_code == 200
    answer = await client.get("/userinfo", headers=bearer(body["access_token"]))
    assert answer.status_code == 401
    with state.database.sessions() as session:
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert grants.is_token_id_revoked(session, claims["jti"])


# ---------------------------------------------------------------- discovery and the API document


async def test_discovery_describes_the_openid_provider(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/.well-known/openid-configuration")).json()
    assert doc["userinfo_endpoint"] == USERINFO
    assert doc["subject_types_supported"] == ["public"]
    assert {"ES256", "RS256"} >= set(doc["id_token_signing_alg_values_supported"]) >= {"ES256"}
    assert {"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "email", "email_verified",
            "name"} <= set(doc["claims_supported"])
    assert {"openid", "profile", "email", "offline_access", "tools:read"} <= set(doc["scopes_supported"])


async def test_userinfo_is_in_the_openapi_document_with_its_errors(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for method in ("get", "post"):
        responses = document["paths"]["/userinfo"][method]["responses"]
        assert {"401", "403"} <= set(responses), method


async def test_userinfo_answers_browsers_from_any_origin(client: httpx.AsyncClient) -> None:
    preflight = await client.options("/userinfo", headers={"Origin": "https://app.example",
                                                            "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
