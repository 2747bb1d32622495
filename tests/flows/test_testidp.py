"""The built-in test IdP through the ASGI app: discovery, login, tokens, userinfo, errors."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.conftest import TEST_USERS
from tests.support.testidp import (
    BASIC,
    CLIENT_ID,
    CLIENT_SECRET,
    FORM,
    REDIRECT_URI,
    TESTIDP,
    VERIFIER,
    assert_token_headers,
    authorize_params,
    log_in,
    login_form,
    query_of,
    redeem,
    verify_with_jwks,
)


async def test_discovery_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/testidp/.well-known/openid-configuration")
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == TESTIDP  # byte for byte
    assert doc["authorization_endpoint"] == f"{TESTIDP}/authorize"
    assert doc["token_endpoint"] == f"{TESTIDP}/token"
    assert doc["userinfo_endpoint"] == f"{TESTIDP}/userinfo"
    assert doc["jwks_uri"] == f"{TESTIDP}/jwks"
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert doc["scopes_supported"] == ["openid", "email", "profile", "groups", "offline_access"]
    assert {"sub", "email", "name", "groups"} <= set(doc["claims_supported"])


async def test_jwks_publishes_an_es256_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/testidp/jwks")
    assert response.status_code == 200
    [key] = response.json()["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256" and key["kid"]
    assert "d" not in key
    broker_kids = {k["kid"] for k in (await client.get("/jwks")).json()["keys"]}
    assert key["kid"] not in broker_kids  # its own key ring, not the broker's


# ---------------------------------------------------------------- the code flow


async def test_full_code_flow(client: httpx.AsyncClient) -> None:
    redirect = await log_in(client)
    assert redirect["state"] == "flow-state" and redirect["iss"] == TESTIDP

    response = await redeem(client, redirect["code"])
    assert response.status_code == 200, response.text
    assert_token_headers(response)
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["refresh_token"]

    claims = await verify_with_jwks(client, body["id_token"], audience=CLIENT_ID)
    alice = TEST_USERS[0]
    assert claims["sub"] == "alice" and claims["nonce"] == "flow-nonce" and claims["amr"] == ["pwd"]
    assert (claims["email"], claims["name"], claims["groups"]) == (alice["email"], alice["name"], alice["groups"])
    assert {"exp", "iat", "auth_time"} <= set(claims)

    userinfo = await client.get("/testidp/userinfo", headers={"authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 200
    assert userinfo.json() == {"sub": "alice", "email": alice["email"], "email_verified": True,
                               "name": alice["name"], "groups": alice["groups"]}


async def test_refresh_flow(client: httpx.AsyncClient) -> None:
    first = (await redeem(client, (await log_in(client, "carol", "carol-pw"))["code"])).json()
    response = await client.post("/testidp/token", data={"grant_type": "refresh_token",
                                                         "refresh_token": first["refresh_token"],
                                                         "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert response.status_code == 200, response.text
    assert_token_headers(response)
    claims = await verify_with_jwks(client, response.json()["id_token"], audience=CLIENT_ID)
    assert claims["sub"] == "carol" and claims["groups"] == ["it-admins", "security"]


async def test_userinfo_by_post(client: httpx.AsyncClient) -> None:
    body = (await redeem(client, (await log_in(client, "bob", "bob-pw"))["code"])).json()
    response = await client.post("/testidp/userinfo", data={"access_token": body["access_token"]})
    assert response.status_code == 200 and response.json()["sub"] == "bob"


async def test_login_hint_prefills_the_username(client: httpx.AsyncClient) -> None:
    response = await client.get("/testidp/authorize", params=authorize_params(login_hint="bob"))
    assert 'name="username" value="bob"' in response.text
    assert response.headers["cache-control"] == "no-store"


# ---------------------------------------------------------------- failures


async def test_wrong_password_shows_the_form_with_an_error(client: httpx.AsyncClient) -> None:
    fields = await login_form(client)
    response = await client.post("/testidp/authorize", data={**fields, "username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "Wrong username or password." in response.text
    assert 'name="username" value="alice"' in response.text


@pytest.mark.parametrize("overrides", [{"redirect_uri": "http://evil.example/callback"},
                                       {"client_id": "unknown-client"}])
async def test_bad_client_or_redirect_uri_shows_an_error_page(client: httpx.AsyncClient,
                                                             overrides: dict[str, str]) -> None:
    response = await client.get("/testidp/authorize", params=authorize_params(**overrides))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "invalid_request" in response.text


async def test_missing_pkce_redirects_with_error_state_and_iss(client: httpx.AsyncClient) -> None:
    response = await client.get("/testidp/authorize", params=authorize_params(code_challenge=None))
    assert response.status_code == 302
    query = query_of(response.headers["location"])
    assert query["error"] == "invalid_request" and query["state"] == "flow-state" and query["iss"] == TESTIDP


async def test_prompt_none_redirects_login_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/testidp/authorize", params=authorize_params(prompt="none"))
    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "login_required"


async def test_code_replay_is_invalid_grant(client: httpx.AsyncClient) -> None:
    code = (await log_in(client))["code"]
    assert (await redeem(client, code)).status_code == 200
    replay = await redeem(client, code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert_token_headers(replay)


async def test_wrong_verifier_is_invalid_grant(client: httpx.AsyncClient) -> None:
    response = await redeem(client, (await log_in(client))["code"], code_verifier="y" * 50)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_wrong_client_secret_is_invalid_client(client: httpx.AsyncClient) -> None:
    code = (await log_in(client))["code"]
    response = await client.post("/testidp/token", auth=httpx.BasicAuth(CLIENT_ID, "wrong"),
                                 data={"grant_type": "authorization_code", "code": code,
                                       "redirect_uri": REDIRECT_URI, "code_verifier": VERIFIER})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert_token_headers(response)


async def test_repeated_token_parameter_is_invalid_request(client: httpx.AsyncClient) -> None:
    code = (await log_in(client))["code"]
    body = urlencode([("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT_URI),
                      ("redirect_uri", "http://evil.example/cb"), ("code_verifier", VERIFIER)])
    response = await client.post("/testidp/token", content=body, auth=BASIC, headers=FORM)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert_token_headers(response)


async def test_repeated_redirect_uri_at_authorize_is_an_error_page(client: httpx.AsyncClient) -> None:
    query = urlencode(list(authorize_params().items()) + [("redirect_uri", "http://evil.example/cb")])
    response = await client.get(f"/testidp/authorize?{query}")
    assert response.status_code == 400 and "location" not in response.headers


async def test_repeated_scope_at_authorize_redirects_invalid_request(client: httpx.AsyncClient) -> None:
    query = urlencode(list(authorize_params().items()) + [("scope", "openid")])
    response = await client.get(f"/testidp/authorize?{query}")
    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "invalid_request"


@pytest.mark.parametrize("request_kwargs", [
    {"content": b"grant_type=authorization_code&code=%FF", "headers": FORM},
    {"json": {"grant_type": "authorization_code", "code": "x"}},
    {"content": b"\xff\xfe", "headers": FORM},
    {"data": {"grant_type": ["a", "b"]}},
])
async def test_malformed_token_requests_are_invalid_request(client: httpx.AsyncClient,
                                                            request_kwargs: dict[str, Any]) -> None:
    response = await client.post("/testidp/token", auth=BASIC, **request_kwargs)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


async def test_non_utf8_authorization_request_is_a_4xx_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/testidp/authorize?client_id=%FF")
    assert response.status_code == 400 and "location" not in response.headers
    multipart = await client.post("/testidp/authorize", files={"username": ("u.txt", b"alice")})
    assert multipart.status_code == 400


async def test_unsupported_grant_type(client: httpx.AsyncClient) -> None:
    response = await client.post("/testidp/token", auth=BASIC, data={"grant_type": "password"})
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


async def test_userinfo_challenges(client: httpx.AsyncClient) -> None:
    missing = await client.get("/testidp/userinfo")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="testidp"'
    bad = await client.get("/testidp/userinfo", headers={"authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    id_token = (await redeem(client, (await log_in(client))["code"])).json()["id_token"]
    confused = await client.get("/testidp/userinfo", headers={"authorization": f"Bearer {id_token}"})
    assert confused.status_code == 401  # an ID token is not an access token


async def test_nothing_secret_is_logged(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        redirect = await log_in(client)
        body = (await redeem(client, redirect["code"])).json()
        await client.get("/testidp/userinfo", headers={"authorization": f"Bearer {body['access_token']}"})
        fields = await login_form(client)
        await client.post("/testidp/authorize", data={**fields, "username": "alice", "password": "guess-pw"})
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in ("alice-pw", "guess-pw", CLIENT_SECRET, redirect["code"], body["access_token"],
                   body["id_token"], body["refresh_token"], VERIFIER):
        assert secret not in logged
