"""Client registration (CLI, DCR), client authentication methods, and client credentials."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from broker.cli import main
from broker.storage.models import Client
from tests.conftest import ISSUER
from tests.support.hostile import OUT_OF_RANGE, signed, verdict, watched_logs, wrong_claims
from tests.support.oauth_flow import (
    CLIENT_REDIRECT,
    DEMO_RESOURCE,
    allow_clients,
    authorize,
    exchange,
    pkce,
    register_client,
    tokens_for,
)

ADMIN_API = f"{ISSUER}/admin/api"


# ---------------------------------------------------------------- dynamic registration


async def test_dcr_public_client_then_full_flow(client: httpx.AsyncClient, state) -> None:
    response = await client.post("/register", json={"client_name": "Claude Code", "redirect_uris": [CLIENT_REDIRECT],
                                                    "token_endpoint_auth_method": "none",
                                                    "grant_types": ["authorization_code", "refresh_token"]})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_id"].startswith("mcp_") and "client_secret" not in body
    assert response.headers["cache-control"] == "no-store"
    tokens = await tokens_for(client, body["client_id"])
    assert tokens["refresh_token"]


async def test_dcr_confidential_client_gets_a_secret_once(client: httpx.AsyncClient, state) -> None:
    response = await client.post("/register", json={"client_name": "Server app", "redirect_uris": [CLIENT_REDIRECT],
                                                    "token_endpoint_auth_method": "client_secret_post"})
    body = response.json()
    assert response.status_code == 201 and len(body["client_secret"]) >= 43
    verifier, challenge = pkce()
    code = (await authorize(client, body["client_id"], challenge))["code"]
    without = await exchange(client, body["client_id"], code, verifier)
    assert without.json()["error"] == "invalid_client"
    code = (await authorize(client, body["client_id"], challenge, approve=None))["code"]
    with_secret = await exchange(client, body["client_id"], code, verifier, client_secret=body["client_secret"])
    assert with_secret.status_code == 200, with_secret.text


@pytest.mark.parametrize("metadata,error", [
    ({"client_name": "x", "redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri"),
    ({"client_name": "x", "redirect_uris": ["javascript:alert(1)"]}, "invalid_client_metadata"),
    ({"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], "grant_types": ["client_credentials"]},
     "invalid_client_metadata"),
    ({"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "private_key_jwt"},
     "invalid_client_metadata"),
    ({"client_name": "x"}, "invalid_redirect_uri"),
    ({"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], "logo_uri": "javascript://x/%0aalert(1)"},
     "invalid_client_metadata"),
    ({"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], "client_uri": "data://x/y"}, "invalid_client_metadata"),
    ({"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], "tos_uri": "http://tracker.example/t"},
     "invalid_client_metadata"),
    ({"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], "policy_uri": "https://x.example/" + "p" * 2048},
     "invalid_client_metadata"),
    ({"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], "contacts": ["a@example.com"] * 11},
     "invalid_client_metadata"),
    ({"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], "contacts": ["a@example.com\r\nBcc: b@example.com"]},
     "invalid_client_metadata"),
])
async def test_dcr_refuses_bad_metadata(client: httpx.AsyncClient, state, metadata, error) -> None:
    from broker.storage import clients as repo

    response = await client.post("/register", json=metadata)
    assert response.status_code == 400 and response.json()["error"] == error, response.text
    with state.database.sessions() as session:
        assert repo.list_all(session) == []


async def test_dcr_keeps_descriptive_metadata_at_web_urls(client: httpx.AsyncClient, state) -> None:
    from broker.storage import clients as repo

    shown = {"client_uri": "https://agent.example.com/", "logo_uri": "http://127.0.0.1:8000/logo.png",
             "contacts": ["ops@agent.example.com"]}
    response = await client.post("/register", json={"client_name": "x", "redirect_uris": [CLIENT_REDIRECT],
                                                     "token_endpoint_auth_method": "none", **shown})
    assert response.status_code == 201 and {k: response.json()[k] for k in shown} == shown, response.text
    with state.database.sessions() as session:
        assert repo.get(session, response.json()["client_id"]).metadata_ == shown


@pytest.mark.parametrize("body,content_type", [
    (b"not json", "application/json"), (b"[]", "application/json"), (b'{"client_name": "x"}', "text/plain"),
    (b"\xff\xfe", "application/json")])
async def test_dcr_refuses_malformed_bodies(client: httpx.AsyncClient, body: bytes, content_type: str) -> None:
    response = await client.post("/register", content=body, headers={"content-type": content_type})
    assert response.status_code == 400 and response.json()["error"] in ("invalid_request", "invalid_client_metadata")


async def test_dcr_is_rate_limited_per_address(client: httpx.AsyncClient, make_settings, state) -> None:
    limit = state.settings.registration.max_per_hour_per_address
    for _ in range(limit):
        assert (await client.post("/register", json={"client_name": "x", "redirect_uris": [CLIENT_REDIRECT],
                                                     "token_endpoint_auth_method": "none"})).status_code == 201
    over = await client.post("/register", json={"client_name": "x", "redirect_uris": [CLIENT_REDIRECT],
                                                "token_endpoint_auth_method": "none"})
    assert over.status_code == 429 and over.json()["error"] == "too_many_requests"


# ---------------------------------------------------------------- client credentials


async def test_client_credentials_for_the_admin_api_needs_registered_scopes(client: httpx.AsyncClient, state) -> None:
    robot = register_client(state, name="SIEM", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("admin:read",))
    ok = await client.post("/token", data={"grant_type": "client_credentials", "resource": ADMIN_API},
                           auth=(robot.row.id, robot.secret))
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["scope"] == "admin:read" and "refresh_token" not in body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == robot.row.id and claims["aud"] == ADMIN_API
    wider = await client.post("/token", data={"grant_type": "client_credentials", "resource": ADMIN_API,
                                              "scope": "admin:write"}, auth=(robot.row.id, robot.secret))
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_grant"


async def test_client_credentials_need_a_confidential_client_and_a_resource(client: httpx.AsyncClient, state) -> None:
    robot = register_client(state, auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("tools:read",))
    allow_clients(state, robot.row.id)
    missing = await client.post("/token", data={"grant_type": "client_credentials"}, auth=(robot.row.id, robot.secret))
    assert missing.json()["error"] == "invalid_target"
    with pytest.raises(ValueError, match="authenticated client"):
        register_client(state, grant_types=("authorization_code", "client_credentials"))
    public = register_client(state)
    with state.database.transaction() as session:  # a row from before registration refused the mix
        session.get(Client, public.row.id).grant_types = ["authorization_code", "client_credentials"]
    refused = await client.post("/token", data={"grant_type": "client_credentials", "client_id": public.row.id,
                                                "resource": DEMO_RESOURCE})
    assert refused.json()["error"] in ("invalid_client", "unauthorized_client")
    machine = await client.post("/token", data={"grant_type": "client_credentials", "resource": DEMO_RESOURCE},
                                auth=(robot.row.id, robot.secret))
    assert machine.status_code == 200 and machine.json()["scope"] == "tools:read"


async def test_users_never_get_admin_api_tokens_through_authorize(client: httpx.AsyncClient, state) -> None:
    from urllib.parse import urlencode

    from tests.support.oauth_flow import authorize_params, query
    new = register_client(state)
    response = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, "x" * 43, resource=ADMIN_API)))
    assert query(response.headers["location"])["error"] == "invalid_target"


# ---------------------------------------------------------------- private_key_jwt


def assertion(key: ec.EllipticCurvePrivateKey, client_id: str, jti: str | None = None, **claims) -> str:
    now = int(time.time())
    payload = {"iss": client_id, "sub": client_id, "aud": f"{ISSUER}/token", "iat": now, "exp": now + 60,
               "jti": jti or str(uuid.uuid4()), **claims}
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": "k1"})


@pytest.fixture
def key_client(state):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "ES256"}
    new = register_client(state, auth_method="private_key_jwt", redirect_uris=[], grant_types=("client_credentials",),
                          scopes=("tools:read",), jwks={"keys": [jwk]})
    allow_clients(state, new.row.id)
    return key, new.row.id


async def test_private_key_jwt_and_its_replay(client: httpx.AsyncClient, key_client) -> None:
    key, client_id = key_client
    signed = assertion(key, client_id, jti="once")
    form = {"grant_type": "client_credentials", "resource": DEMO_RESOURCE,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    first = await client.post("/token", data={**form, "client_assertion": signed})
    assert first.status_code == 200, first.text
    replay = await client.post("/token", data={**form, "client_assertion": signed})
    assert replay.status_code in (400, 401) and replay.json()["error"] == "invalid_client"


async def test_private_key_jwt_signed_by_another_key(client: httpx.AsyncClient, key_client) -> None:
    _, client_id = key_client
    forged = assertion(ec.generate_private_key(ec.SECP256R1()), client_id)
    response = await client.post("/token", data={
        "grant_type": "client_credentials", "resource": DEMO_RESOURCE, "client_assertion": forged,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert response.json()["error"] == "invalid_client"


async def test_a_client_assertion_with_any_claim_of_the_wrong_type_is_invalid_client(app, key_client) -> None:
    """Signed with the client's own registered key, so every claim is read (RFC 7523 §3): one of the wrong JSON
    type, or a required one missing (iat and nbf are optional), is invalid_client, never a crash or a
    traceback."""
    key, client_id = key_client
    now = int(time.time())
    genuine = {"iss": client_id, "sub": client_id, "aud": f"{ISSUER}/token", "iat": now, "exp": now + 60,
               "jti": "j", "nbf": now - 1}
    form = {"grant_type": "client_credentials", "resource": DEMO_RESOURCE,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    problems, tried = [], 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url=ISSUER) as raw:
        for name, case, variant in wrong_claims(genuine, out_of_range=True):
            fresh = variant if name == "jti" else {**variant, "jti": str(uuid.uuid4())}
            with watched_logs() as seen:
                response = await raw.post("/token", data={**form, "client_assertion": signed(
                    fresh, key, "ES256", {"kid": "k1"})})
            tried += 1
            problem = verdict(response.status_code, seen)
            optional = name in ("iat", "nbf") and (case == "missing" or case in OUT_OF_RANGE)  # never in the future
            if problem or (response.status_code < 400 and not optional):
                problems.append(f"{name} {case}: {response.status_code} {response.text[:100]} {problem or ''}")
    assert tried > 100 and not problems, "\n".join(problems[:30])


# ---------------------------------------------------------------- CLI


def test_cli_clients_add_list_show_disable(state, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BROKER_MODE", "dev")
    monkeypatch.setenv("BROKER_ISSUER", ISSUER)
    monkeypatch.setenv("BROKER_DATABASE__URL", state.settings.database_url)
    monkeypatch.setenv("BROKER_KEYS__KEY_ENCRYPTION_KEY", state.settings.keys.key_encryption_key.get_secret_value())
    assert main(["clients", "add", "--name", "VS Code", "--redirect-uri", "http://127.0.0.1:33418/", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["client_secret"] is None and added["auth_method"] == "none"
    assert main(["clients", "add", "--name", "RS", "--confidential", "--introspect", "--json"]) == 0
    rs = json.loads(capsys.readouterr().out)
    assert rs["client_secret"] and rs["may_introspect"] is True
    assert main(["clients", "list", "--json"]) == 0
    assert {c["name"] for c in json.loads(capsys.readouterr().out)} == {"VS Code", "RS"}
    assert main(["clients", "disable", added["client_id"]]) == 0
    capsys.readouterr()
    assert main(["clients", "show", added["client_id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "disabled"
    assert main(["clients", "add", "--name", "Bad", "--redirect-uri", "http://evil.example/cb"]) == 2
    assert "http redirect URIs are allowed only on loopback" in capsys.readouterr().err
    assert main(["clients", "show", "nope"]) == 2
