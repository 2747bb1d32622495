"""Operational endpoints and the cross-cutting HTTP behaviour every route shares."""

from __future__ import annotations

import io
import json
import logging

import httpx
import jwt
import pytest
from sqlalchemy import text

from broker import logs
from broker.storage.schema import HEAD
from tests.conftest import TEST_USERS, TESTIDP_CLIENT
from tests.support.testidp import log_in, redeem


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_when_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"shutdown": "ok", "database": "ok", "schema": "ok",
                                                             "signing_key": "ok"}}


async def test_readyz_names_a_stale_schema_and_logs_the_revision(client: httpx.AsyncClient, state,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    with state.database.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    with caplog.at_level(logging.INFO, logger="broker.web.health"):
        first, second = await client.get("/readyz"), await client.get("/readyz")
    assert first.status_code == second.status_code == 503
    assert first.json() == {"status": "not ready", "checks": {"shutdown": "ok", "database": "ok", "schema": "failed",
                                                              "signing_key": "not checked"}}
    assert "0001" not in first.text
    [logged] = [r.getMessage() for r in caplog.records if r.name == "broker.web.health"]  # once, not per probe
    assert logged == ("not ready: schema check failed: the database schema is at revision 0001, this broker needs "
                      f"{HEAD}: run `broker db upgrade`")


async def test_readyz_keeps_the_database_error_off_the_public_port(client: httpx.AsyncClient, state,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from broker.storage.db import Database

    healthy = state.database
    state.database = Database("postgresql://nobody@127.0.0.1:1/none")
    with caplog.at_level(logging.INFO, logger="broker.web.health"):
        response = await client.get("/readyz")
        assert response.status_code == 503 and response.json()["checks"]["database"] == "failed"
        assert "127.0.0.1" not in response.text and "nobody" not in response.text
        state.database = healthy
        assert (await client.get("/readyz")).status_code == 200
    logged = [r.getMessage() for r in caplog.records if r.name == "broker.web.health"]
    assert logged[0].startswith("not ready: database check failed: database unreachable") and "127.0.0.1" in logged[0]
    assert logged[1] == "ready again (the database check passes)"


async def test_jwks_publishes_the_broker_key_and_not_the_test_idp_key(client: httpx.AsyncClient) -> None:
    broker_keys = (await client.get("/jwks")).json()["keys"]
    idp_keys = (await client.get("/testidp/jwks")).json()["keys"]
    assert len(broker_keys) == 1 and broker_keys[0]["alg"] == "ES256" and "d" not in broker_keys[0]
    assert not {k["kid"] for k in broker_keys} & {k["kid"] for k in idp_keys}


async def test_jwks_verifies_what_the_broker_signs(client: httpx.AsyncClient, state) -> None:
    with state.database.transaction() as session:
        token = state.keyring.active(session).sign({"sub": "x"}, typ="at+jwt")
    [jwk] = (await client.get("/jwks")).json()["keys"]
    assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["ES256"])["sub"] == "x"


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz", headers={"x-request-id": "abc-123"})).headers["x-request-id"] == "abc-123"
    made = (await client.get("/healthz", headers={"x-request-id": "bad id\r\nx"})).headers["x-request-id"]
    assert made != "bad id\r\nx" and len(made) == 16


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/jwks", "/nowhere", "/.well-known/oauth-authorization-server"):
        headers = (await client.get(path)).headers
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"  # RFC 9700 §4.2: no code or state in a Referer
    token_error = await client.post("/token", content=b"grant_type=refresh_token",
                                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert token_error.headers["referrer-policy"] == "no-referrer" and token_error.headers["x-frame-options"] == "DENY"


async def test_unknown_path_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


async def test_oversized_body_is_413_before_the_route_reads_it(client: httpx.AsyncClient, settings) -> None:
    body = b"grant_type=x&pad=" + b"a" * settings.server.max_body_bytes
    response = await client.post("/testidp/token", content=body,
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413 and response.json()["error"] == "invalid_request"


async def test_no_token_secret_or_password_reaches_a_log_line(client: httpx.AsyncClient, state) -> None:
    """A whole login and token exchange at DEBUG level; nothing secret appears in any log line."""
    stream = io.StringIO()
    logs.configure("DEBUG", "json", stream)
    redirect = await log_in(client)
    tokens = (await redeem(client, redirect["code"])).json()
    refreshed = (await client.post("/testidp/token", data={"grant_type": "refresh_token",
                                                           "refresh_token": tokens["refresh_token"]},
                                   auth=(TESTIDP_CLIENT["client_id"], TESTIDP_CLIENT["client_secret"]))).json()
    await client.get("/testidp/userinfo", headers={"authorization": f"Bearer {tokens['access_token']}"})
    logging.getLogger("broker.test").info("done")
    output = stream.getvalue()
    lines = output.splitlines()
    assert len(lines) > 5 and all(json.loads(line) for line in lines)
    secrets = [redirect["code"], tokens["access_token"], tokens["id_token"], tokens["refresh_token"],
               refreshed["access_token"], refreshed["refresh_token"], TEST_USERS[0]["password"],
               TESTIDP_CLIENT["client_secret"], state.settings.keys.key_encryption_key.get_secret_value()]
    for secret in secrets:
        assert secret not in output
    # and no fragment long enough to matter (e.g. a JWT's signature part)
    for secret in secrets:
        for part in secret.split("."):
            if len(part) >= 16:
                assert part not in output
