"""The test IdP's token exchange into ID-JAGs through the ASGI app: discovery, success, error rendering."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import jwt
import pytest

from broker.config import Settings
from tests.conftest import ISSUER
from tests.support.testidp import (
    BASIC,
    CLIENT_ID,
    FORM,
    TESTIDP,
    assert_token_headers,
    log_in,
    redeem,
    verify_with_jwks,
)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
RESOURCE = f"{ISSUER}/demo/mcp"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(testidp={"id_jag_audiences": [ISSUER]})  # as `broker dev` configures it


async def sso_id_token(client: httpx.AsyncClient) -> str:
    response = await redeem(client, (await log_in(client))["code"])
    assert response.status_code == 200, response.text
    return response.json()["id_token"]


def exchange_form(id_token: str, **overrides: str) -> dict[str, str]:
    return {"grant_type": TOKEN_EXCHANGE, "requested_token_type": ID_JAG, "subject_token": id_token,
            "subject_token_type": ID_TOKEN, "audience": ISSUER, "resource": RESOURCE, "scope": "openid tools:read",
            **overrides}


async def test_discovery_advertises_the_exchange(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/testidp/.well-known/openid-configuration")).json()
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token", TOKEN_EXCHANGE}
    assert doc["identity_chaining_requested_token_types_supported"] == [ID_JAG]


async def test_id_token_is_exchanged_for_an_id_jag(client: httpx.AsyncClient) -> None:
    response = await client.post("/testidp/token", data=exchange_form(await sso_id_token(client)), auth=BASIC)
    assert response.status_code == 200, response.text
    assert_token_headers(response)  # RFC 6749 §5.1: no-store
    body = response.json()
    assert body == {"issued_token_type": ID_JAG, "access_token": body["access_token"], "token_type": "N_A",
                    "expires_in": 300, "scope": "tools:read"}
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "oauth-id-jag+jwt"
    claims = await verify_with_jwks(client, body["access_token"], audience=ISSUER)
    assert (claims["iss"], claims["sub"], claims["client_id"], claims["resource"]) == (
        TESTIDP, "alice", CLIENT_ID, RESOURCE)


async def test_exchange_without_client_authentication_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/testidp/token", data=exchange_form(await sso_id_token(client)))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"] == 'Basic realm="testidp"'
    assert_token_headers(response)


@pytest.mark.parametrize("overrides,code", [
    ({"audience": "https://elsewhere.example.com"}, "invalid_target"),
    ({"resource": "http://mcp.example.com/mcp"}, "invalid_target"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "unsupported_token_type"),
    ({"subject_token": "not-a-jwt"}, "invalid_grant"),
    ({"requested_token_type": "urn:ietf:params:oauth:token-type:access_token"}, "invalid_request"),
])
async def test_refusals_are_rendered_as_token_errors(client: httpx.AsyncClient, overrides: dict[str, str],
                                                     code: str) -> None:
    response = await client.post("/testidp/token", data=exchange_form(await sso_id_token(client), **overrides),
                                 auth=BASIC)
    assert response.status_code == 400
    assert response.json()["error"] == code
    assert_token_headers(response)


async def test_repeated_audience_is_invalid_request(client: httpx.AsyncClient) -> None:
    form = [*exchange_form(await sso_id_token(client)).items(), ("audience", ISSUER)]
    response = await client.post("/testidp/token", content=urlencode(form).encode(), headers=FORM, auth=BASIC)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
