"""The front (``broker.web.engine``): the token side's paths answered without FastAPI, with what the FastAPI
stack gives every other path (request ids, security headers, CORS, the body cap, 405s, a 503 for an
unavailable database)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from broker.storage.db import Database
from broker.web.middleware import SECURITY_HEADERS
from tests.conftest import ISSUER

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_jwks_is_served_with_its_media_type_cors_and_security_headers(client: httpx.AsyncClient,
                                                                           state) -> None:
    response = await client.get("/jwks", headers={"x-request-id": "req-1.a_b"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jwk-set+json"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["x-request-id"] == "req-1.a_b"
    for name, value in SECURITY_HEADERS:
        assert response.headers[name.decode()] == value.decode()
    with state.database.transaction() as session:
        grace = dt.timedelta(seconds=state.settings.longest_jwt_lifetime)
        assert response.json() == state.keyring.jwks(session, grace)


async def test_an_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/jwks", headers={"x-request-id": "a\tb"})
    assert response.headers["x-request-id"] != "a\tb" and len(response.headers["x-request-id"]) == 16


async def test_discovery_follows_the_registry(client: httpx.AsyncClient, cli) -> None:
    first = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert first["issuer"] == ISSUER and "tools:read" in first["scopes_supported"]
    assert cli(["servers", "add", "--id", "crm", "--name", "CRM", "--resource", "https://crm.example.com/mcp",
                "--scopes", "crm:read"]) == 0
    again = (await client.get("/.well-known/openid-configuration")).json()
    assert "crm:read" in again["scopes_supported"]


async def test_head_is_a_get_and_other_methods_are_405(client: httpx.AsyncClient) -> None:
    assert (await client.head("/jwks")).status_code == 200
    refused = await client.post("/jwks")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert refused.json() == {"error": "method_not_allowed", "error_description": "Method Not Allowed"}


async def test_a_preflight_is_answered_for_any_origin(client: httpx.AsyncClient) -> None:
    response = await client.options("/.well-known/oauth-authorization-server",
                                    headers={"origin": "https://app.example", "access-control-request-method": "GET"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in response.headers["access-control-allow-headers"]


async def test_a_body_over_the_cap_is_413_before_anything_else(client: httpx.AsyncClient, state) -> None:
    too_big = b"x" * (state.settings.server.max_body_bytes + 1)
    response = await client.post("/jwks", content=too_big)
    assert response.status_code == 413 and response.json()["error"] == "invalid_request"
    assert "access-control-allow-origin" not in response.headers


async def test_an_unavailable_database_is_a_503(client: httpx.AsyncClient, state) -> None:
    state.database = Database("postgresql://nobody@127.0.0.1:1/none")  # refused at once, as a stopped server is
    try:
        response = await client.get("/.well-known/oauth-authorization-server")
    finally:
        state.database.dispose()
    assert response.status_code == 503 and response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "1"
