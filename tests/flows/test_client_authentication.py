"""Client authentication methods through HTTP: what a client registered is what it must use, at every endpoint.

The rules live in ``broker.oauth.client_auth``; these tests pin them at ``/token``, ``/introspect``,
``/revoke``, ``/register``, the admin API and the CLI, on both stores. Keys at a ``jwks_uri`` come from
``FakeMetadataFetcher`` (the SSRF-guarded fetcher itself is tested in tests/unit/oauth/test_cimd_ssrf.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from broker.storage import clients as repo
from tests.conftest import ISSUER
from tests.flows.test_admin_api import API, bearer
from tests.support.metadata_fetcher import FakeMetadataFetcher, state_fetching_with
from tests.support.oauth_flow import (
    CLIENT_REDIRECT,
    DEMO_RESOURCE,
    allow_clients,
    authorize,
    exchange,
    pkce,
    register_client,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWKS_URI = "https://agent.example.com/jwks.json"
CLIENT_CREDENTIALS = {"grant_type": "client_credentials", "resource": DEMO_RESOURCE}


@pytest.fixture
def documents() -> FakeMetadataFetcher:
    return FakeMetadataFetcher()


@pytest.fixture
def state(settings: Any, migrated: Any, loopback: Any, documents: FakeMetadataFetcher) -> Iterator[Any]:
    with state_fetching_with(settings, loopback, documents) as broker_state:
        yield broker_state


def machine(state: Any, *methods: str, **keys: Any) -> tuple[str, str | None]:
    """A client-credentials client registered for ``methods``, allowed the demo server: (id, secret)."""
    new = register_client(state, auth_method=methods, redirect_uris=[], grant_types=("client_credentials",),
                          scopes=("tools:read",), **keys)
    allow_clients(state, new.row.id)
    return new.row.id, new.secret


def refused(response: httpx.Response, description: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "invalid_client", "error_description": description}


# ---------------------------------------------------------------- the secret methods


async def test_a_client_secret_post_client_authenticates_in_the_body(client: httpx.AsyncClient, state: Any) -> None:
    client_id, secret = machine(state, "client_secret_post")
    posted = await client.post("/token", data={**CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": secret})
    assert posted.status_code == 200, posted.text
    basic = await client.post("/token", data=CLIENT_CREDENTIALS, auth=(client_id, secret))
    refused(basic, "the client is registered for client_secret_post; the request used client_secret_basic")


async def test_a_client_registered_for_both_secret_methods_may_use_either(client: httpx.AsyncClient,
                                                                          state: Any) -> None:
    client_id, secret = machine(state, "client_secret_basic", "client_secret_post")
    basic = await client.post("/token", data=CLIENT_CREDENTIALS, auth=(client_id, secret))
    posted = await client.post("/token", data={**CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": secret})
    assert (basic.status_code, posted.status_code) == (200, 200), (basic.text, posted.text)
    without = await client.post("/revoke", data={"token": "x", "client_id": client_id})  # /revoke takes none
    refused(without, "the client is registered for client_secret_basic or client_secret_post; "
                     "the request carried no client credentials")


async def test_a_wrong_secret_is_refused_without_naming_the_registered_methods(client: httpx.AsyncClient,
                                                                               state: Any) -> None:
    client_id, _ = machine(state, "client_secret_post")
    wrong = await client.post("/token", data={**CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": "x" * 43})
    refused(wrong, "client authentication failed: the client secret (client_secret) is wrong")
    wrong_basic = await client.post("/token", data=CLIENT_CREDENTIALS, auth=(client_id, "x" * 43))
    refused(wrong_basic, "client authentication failed: the client secret (Authorization: Basic) is wrong")


async def test_two_authentication_methods_in_one_request_are_refused(client: httpx.AsyncClient, state: Any) -> None:
    client_id, secret = machine(state, "client_secret_basic", "client_secret_post")
    both = await client.post("/token", data={**CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": secret},
                             auth=(client_id, secret))
    assert both.status_code == 400 and both.json()["error"] == "invalid_request", both.text
    assert "client_secret_basic and client_secret_post" in both.json()["error_description"]


async def test_a_grant_for_confidential_clients_tells_a_public_client_what_it_needs(client: httpx.AsyncClient,
                                                                                    state: Any) -> None:
    public = register_client(state)
    response = await client.post("/token", data={**CLIENT_CREDENTIALS, "client_id": public.row.id})
    refused(response, "this request needs client authentication with client_secret_basic, client_secret_post or "
                      "private_key_jwt; the request carried no client credentials")


async def test_introspection_and_revocation_take_the_registered_method(client: httpx.AsyncClient,
                                                                       state: Any) -> None:
    client_id, secret = machine(state, "client_secret_post")
    token = (await client.post("/token", data={**CLIENT_CREDENTIALS, "client_id": client_id,
                                                "client_secret": secret})).json()["access_token"]
    server = register_client(state, auth_method="client_secret_post", redirect_uris=[], grant_types=(),
                             may_introspect=True)
    as_post = {"token": token, "client_id": server.row.id, "client_secret": server.secret}
    introspected = await client.post("/introspect", data=as_post)
    assert introspected.status_code == 200 and introspected.json()["active"] is True, introspected.text
    refused(await client.post("/introspect", data={"token": token}, auth=(server.row.id, server.secret)),
            "the client is registered for client_secret_post; the request used client_secret_basic")
    revoked = await client.post("/revoke", data={"token": token, "client_id": client_id, "client_secret": secret})
    assert revoked.status_code == 200, revoked.text
    assert (await client.post("/introspect", data=as_post)).json() == {"active": False}


async def test_authorization_code_with_client_secret_post(client: httpx.AsyncClient, state: Any) -> None:
    app = register_client(state, auth_method="client_secret_post")
    verifier, challenge = pkce()
    code = (await authorize(client, app.row.id, challenge))["code"]
    tokens = await exchange(client, app.row.id, code, verifier, client_secret=app.secret)
    assert tokens.status_code == 200, tokens.text


# ---------------------------------------------------------------- private_key_jwt


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwks(key: ec.EllipticCurvePrivateKey, kid: str = "k1") -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**jwk, "kid": kid, "alg": "ES256", "use": "sig"}]}


def assertion(key: ec.EllipticCurvePrivateKey, client_id: str, kid: str = "k1") -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": f"{ISSUER}/token", "iat": now, "exp": now + 60,
              "jti": str(uuid.uuid4())}
    signed = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}


async def test_a_private_key_jwt_client_refuses_a_secret(client: httpx.AsyncClient, state: Any) -> None:
    key = new_key()
    client_id, _ = machine(state, "private_key_jwt", jwks=public_jwks(key))
    assert (await client.post("/token", data={**CLIENT_CREDENTIALS, **assertion(key, client_id)})).status_code == 200
    with_id_only = await client.post("/revoke", data={"token": "x", "client_id": client_id})
    refused(with_id_only, "the client is registered for private_key_jwt; the request carried no client credentials")
    # It has no secret to be wrong: a secret sent anyway (e.g. typed into a client's form) is told the method.
    posted = await client.post("/token", data={**CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": "s" * 43})
    refused(posted, "the client is registered for private_key_jwt; the request used client_secret_post")
    public = register_client(state)
    as_basic = await client.post("/revoke", data={"token": "x"}, auth=(public.row.id, "s" * 43))
    refused(as_basic, "the client is registered for none; the request used client_secret_basic")


async def test_private_key_jwt_with_keys_at_a_jwks_uri(client: httpx.AsyncClient, state: Any,
                                                       documents: FakeMetadataFetcher) -> None:
    key = new_key()
    documents.serve(JWKS_URI, public_jwks(key))
    client_id, _ = machine(state, "private_key_jwt", jwks_uri=JWKS_URI)
    for _ in range(2):
        response = await client.post("/token", data={**CLIENT_CREDENTIALS, **assertion(key, client_id)})
        assert response.status_code == 200, response.text
    assert documents.fetches == [JWKS_URI]  # cached per its Cache-Control
    refused(await client.post("/token", data={**CLIENT_CREDENTIALS, **assertion(new_key(), client_id)}),
            "client authentication failed: the client assertion does not verify")


async def test_a_client_key_replaced_under_the_same_kid_is_refetched_once(client: httpx.AsyncClient, state: Any,
                                                                          documents: FakeMetadataFetcher) -> None:
    old, rotated = new_key(), new_key()
    documents.serve(JWKS_URI, public_jwks(old))
    client_id, _ = machine(state, "private_key_jwt", jwks_uri=JWKS_URI)
    assert (await client.post("/token", data={**CLIENT_CREDENTIALS, **assertion(old, client_id)})).status_code == 200
    documents.serve(JWKS_URI, public_jwks(rotated))  # same kid, new key; the cached set is still fresh
    response = await client.post("/token", data={**CLIENT_CREDENTIALS, **assertion(rotated, client_id)})
    assert response.status_code == 200, response.text
    assert documents.fetches == [JWKS_URI, JWKS_URI]
    forged = await client.post("/token", data={**CLIENT_CREDENTIALS, **assertion(new_key(), client_id)})
    assert forged.status_code == 401 and documents.fetches == [JWKS_URI, JWKS_URI]  # refetch rate limited


async def test_a_jwks_uri_that_cannot_be_fetched_is_invalid_client(client: httpx.AsyncClient, state: Any,
                                                                   documents: FakeMetadataFetcher) -> None:
    documents.fail(JWKS_URI, "agent.example.com resolves to a private address, which is never fetched from")
    client_id, _ = machine(state, "private_key_jwt", jwks_uri=JWKS_URI)
    response = await client.post("/token", data={**CLIENT_CREDENTIALS, **assertion(new_key(), client_id)})
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"
    assert "private address" in response.json()["error_description"]


# ---------------------------------------------------------------- dynamic registration (RFC 7591)


async def test_every_method_the_metadata_advertises_can_be_registered_dynamically(client: httpx.AsyncClient,
                                                                                  state: Any) -> None:
    advertised = (await client.get("/.well-known/oauth-authorization-server")).json()
    keys = {"private_key_jwt": {"jwks": public_jwks(new_key())}}
    for method in advertised["token_endpoint_auth_methods_supported"]:
        response = await client.post("/register", json={"client_name": method, "redirect_uris": [CLIENT_REDIRECT],
                                                         "token_endpoint_auth_method": method, **keys.get(method, {})})
        assert response.status_code == 201, (method, response.text)
        assert response.json()["token_endpoint_auth_method"] == method


async def test_dcr_private_key_jwt_client_completes_a_sign_in(client: httpx.AsyncClient, state: Any) -> None:
    key = new_key()
    registered = await client.post("/register", json={
        "client_name": "Server app", "redirect_uris": [CLIENT_REDIRECT],
        "token_endpoint_auth_method": "private_key_jwt", "jwks": public_jwks(key)})
    assert registered.status_code == 201 and "client_secret" not in registered.json(), registered.text
    client_id = registered.json()["client_id"]
    verifier, challenge = pkce()
    code = (await authorize(client, client_id, challenge))["code"]
    tokens = await exchange(client, client_id, code, verifier, **assertion(key, client_id))
    assert tokens.status_code == 200, tokens.text


async def test_dcr_private_key_jwt_with_a_jwks_uri(client: httpx.AsyncClient, state: Any,
                                                   documents: FakeMetadataFetcher) -> None:
    key = new_key()
    documents.serve(JWKS_URI, public_jwks(key))
    registered = await client.post("/register", json={
        "client_name": "Server app", "redirect_uris": [CLIENT_REDIRECT],
        "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": JWKS_URI})
    assert registered.status_code == 201 and registered.json()["jwks_uri"] == JWKS_URI, registered.text
    client_id = registered.json()["client_id"]
    verifier, challenge = pkce()
    code = (await authorize(client, client_id, challenge))["code"]
    assert (await exchange(client, client_id, code, verifier, **assertion(key, client_id))).status_code == 200


@pytest.mark.parametrize("metadata,reason", [
    ({"token_endpoint_auth_method": "private_key_jwt"}, "needs the client's public keys"),
    ({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": JWKS_URI, "jwks": public_jwks(new_key())},
     "as jwks or as jwks_uri, not both"),  # RFC 7591 §2: MUST NOT both
    ({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "not a URL"}, "jwks_uri must be an https URL"),
    ({"token_endpoint_auth_method": "client_secret_jwt"},
     "token_endpoint_auth_method must be one of none, client_secret_basic, client_secret_post, private_key_jwt"),
    ({"grant_types": ["client_credentials"]}, "only authorization_code and refresh_token may be registered"),
    ({"response_types": ["code", "token"]}, "response_types: only code is supported"),
    ({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://agent.example.com/jwks"},
     "jwks_uri must be an https URL"),
    ({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}},
     "only public"),
    ({"token_endpoint_auth_method": "client_secret_post", "jwks_uri": JWKS_URI}, "for private_key_jwt clients only"),
    ({"token_endpoint_auth_method": "private_key_jwt", "jwks": public_jwks(new_key()),
      "token_endpoint_auth_signing_alg": "HS256"}, "token_endpoint_auth_signing_alg must be one of ES256, RS256"),
    ({"token_endpoint_auth_method": "private_key_jwt", "jwks": public_jwks(new_key()),
      "token_endpoint_auth_signing_alg": "none"}, "token_endpoint_auth_signing_alg must be one of ES256, RS256"),
    ({"token_endpoint_auth_method": "none", "token_endpoint_auth_signing_alg": "ES256"},
     "applies to token_endpoint_auth_method private_key_jwt only"),
])
async def test_dcr_refuses_unusable_keys(client: httpx.AsyncClient, state: Any, metadata: dict[str, Any],
                                         reason: str) -> None:
    response = await client.post("/register", json={"client_name": "x", "redirect_uris": [CLIENT_REDIRECT], **metadata})
    assert response.status_code == 400 and response.json()["error"] == "invalid_client_metadata", response.text
    assert reason in response.json()["error_description"]
    with state.database.sessions() as session:
        assert repo.list_all(session) == []


def rsa_assertion(client_id: str, kid: str) -> tuple[dict[str, Any], dict[str, str]]:
    """An RSA key's public JWK and an RS256 assertion signed with it."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig"}
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": f"{ISSUER}/token", "iat": now, "exp": now + 60,
              "jti": str(uuid.uuid4())}
    return jwk, {"client_assertion_type": ASSERTION_TYPE,
                 "client_assertion": jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})}


async def test_a_registered_signing_alg_is_the_only_one_the_token_endpoint_takes(client: httpx.AsyncClient,
                                                                                  state: Any) -> None:
    """OIDC Registration §2: token_endpoint_auth_signing_alg MUST be used; another key of the client's set signing with
    another algorithm is refused."""
    key = new_key()
    keys = public_jwks(key)
    registered = await client.post("/register", json={
        "client_name": "Server app", "redirect_uris": [CLIENT_REDIRECT],
        "token_endpoint_auth_method": "private_key_jwt", "jwks": keys, "token_endpoint_auth_signing_alg": "ES256"})
    assert registered.status_code == 201 and registered.json()["token_endpoint_auth_signing_alg"] == "ES256"
    client_id = registered.json()["client_id"]
    rsa_jwk, rsa_signed = rsa_assertion(client_id, "k2")
    with state.database.transaction() as session:  # the same client also holds an RSA key
        from broker.storage.models import Client

        session.get(Client, client_id).jwks = {"keys": [*keys["keys"], rsa_jwk]}
    verifier, challenge = pkce()
    code = (await authorize(client, client_id, challenge))["code"]
    other_alg = await exchange(client, client_id, code, verifier, **rsa_signed)
    assert other_alg.status_code == 401 and other_alg.json()["error"] == "invalid_client", other_alg.text
    code = (await authorize(client, client_id, challenge))["code"]
    assert (await exchange(client, client_id, code, verifier, **assertion(key, client_id))).status_code == 200


# ---------------------------------------------------------------- the operators' doors


def test_cli_registers_a_client_for_several_methods(state: Any, cli: Any, capsys: Any, tmp_path: Any) -> None:
    assert cli(["clients", "add", "--name", "Agent", "--auth-method", "client_secret_post",
                "--auth-method", "client_secret_basic", "--client-credentials", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["auth_methods"] == ["client_secret_post", "client_secret_basic"]
    assert added["auth_method"] == "client_secret_post" and added["client_secret"]
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(public_jwks(new_key())))
    assert cli(["clients", "add", "--name", "Signer", "--auth-method", "private_key_jwt", "--jwks", str(keys),
                "--client-credentials", "--json"]) == 0
    signer = json.loads(capsys.readouterr().out)
    assert signer["auth_methods"] == ["private_key_jwt"] and signer["client_secret"] is None
    assert cli(["clients", "add", "--name", "Fetched", "--jwks-uri", JWKS_URI, "--client-credentials", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jwks_uri"] == JWKS_URI


@pytest.mark.parametrize("args,message", [
    (["--public", "--auth-method", "client_secret_post"], "a public client authenticates with none only"),
    (["--auth-method", "none", "--auth-method", "client_secret_basic"], "cannot be combined"),
    (["--auth-method", "private_key_jwt"], "give jwks or jwks_uri"),
    (["--auth-method", "client_secret_post", "--jwks-uri", JWKS_URI], "for private_key_jwt clients only"),
    (["--jwks-uri", "http://agent.example.com/jwks"], "jwks_uri must be an https URL"),
    (["--jwks", "/nonexistent/jwks.json"], "--jwks /nonexistent/jwks.json"),
])
def test_cli_refuses_contradicting_auth_choices(state: Any, cli: Any, capsys: Any, args: list[str],
                                                message: str) -> None:
    assert cli(["clients", "add", "--name", "Bad", "--client-credentials", *args]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    with state.database.sessions() as session:
        assert all(c.name != "Bad" for c in repo.list_all(session))


async def test_admin_api_registers_auth_methods(client: httpx.AsyncClient, state: Any) -> None:
    auth, _ = await bearer(client, state, "admin:read", "admin:write")
    created = await client.post(f"{API}/clients", json={
        "name": "Agent", "auth_methods": ["client_secret_post", "client_secret_basic"], "client_credentials": True},
        headers=auth)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["auth_methods"] == ["client_secret_post", "client_secret_basic"] and body["client_secret"]
    shown = (await client.get(f"{API}/clients/{body['client_id']}", headers=auth)).json()
    assert shown["auth_methods"] == body["auth_methods"]
    signer = await client.post(f"{API}/clients", json={"name": "Signer", "jwks": public_jwks(new_key()),
                                                       "client_credentials": True}, headers=auth)
    assert signer.status_code == 201 and signer.json()["auth_methods"] == ["private_key_jwt"], signer.text
    contradicting = await client.post(f"{API}/clients", json={"name": "x", "confidential": False,
                                                              "auth_methods": ["client_secret_post"]}, headers=auth)
    assert contradicting.status_code == 400 and "public client" in contradicting.json()["error_description"]
    unknown = await client.post(f"{API}/clients", json={"name": "x", "auth_methods": ["client_secret_jwt"]},
                                headers=auth)
    assert unknown.status_code == 400
