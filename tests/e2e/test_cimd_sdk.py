"""A CIMD client end to end: the MCP SDK with ``client_metadata_url`` against a real ``broker dev``.

The client's metadata document is served over https on loopback (tests/support/https_server.py,
a test CA made at test time). The broker reaches it only because this test starts it with the
dev/test-only ``cimd.allow_loopback`` (production mode refuses that setting) and the test CA as
``cimd.ca_file``; a second broker with the same CA but without ``allow_loopback`` refuses the same
client, so the SSRF guard stays on everywhere else. A dynamically registered ``private_key_jwt``
client's ``jwks_uri`` is fetched by the same guarded fetcher: the same two brokers show it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mcp.client.auth.oauth2 import OAuthClientProvider

from tests.support.https_server import HttpsDocumentServer, TestCertificates
from tests.support.mcp_browser import McpBrowser
from tests.support.mcp_client import REDIRECT_URI, InMemoryTokenStorage, call_whoami, metadata
from tests.support.processes import BROKER, ServerProcess, run_broker

pytestmark = pytest.mark.e2e
DOCUMENT_PATH = "/clients/sdk-e2e.json"
KEYS_PATH = "/clients/server-app/jwks.json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return TestCertificates(tmp_path_factory.mktemp("tls"), hosts=["localhost"])


@pytest.fixture(scope="module")
def document_server(certificates: TestCertificates) -> Iterator[HttpsDocumentServer]:
    with HttpsDocumentServer(certificates) as server:
        client_id = server.url(DOCUMENT_PATH)  # https://127.0.0.1:<port>/clients/sdk-e2e.json
        server.serve_json(DOCUMENT_PATH, {
            "client_id": client_id, "client_name": "SDK CIMD e2e client", "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "token_endpoint_auth_method": "none"}, headers={"Cache-Control": "max-age=60"})
        yield server


def start_broker(base: Path, certificates: TestCertificates, *, allow_loopback: bool) -> ServerProcess:
    env = {"BROKER_CIMD__CA_FILE": str(certificates.ca_pem)}
    if allow_loopback:
        env["BROKER_CIMD__ALLOW_LOOPBACK"] = "true"
    return ServerProcess([*BROKER, "dev", "--port", "{port}", "--data-dir", str(base / "var")], env=env,
                         log_path=base / "dev.log", cwd=base)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, certificates: TestCertificates) -> Iterator[ServerProcess]:
    with start_broker(tmp_path_factory.mktemp("broker"), certificates, allow_loopback=True) as server:
        yield server


@pytest.fixture(scope="module")
def guarded_broker(tmp_path_factory: pytest.TempPathFactory,
                   certificates: TestCertificates) -> Iterator[ServerProcess]:
    with start_broker(tmp_path_factory.mktemp("guarded"), certificates, allow_loopback=False) as server:
        yield server


def stored_clients(server: ServerProcess) -> list[dict]:
    data_dir = server.args[server.args.index("--data-dir") + 1]
    listed = run_broker("clients", "list", "--json", "--data-dir", data_dir, env={})
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


async def test_sdk_client_uses_its_metadata_document(broker: ServerProcess, document_server: HttpsDocumentServer,
                                                     tmp_path: Path) -> None:
    client_id = document_server.url(DOCUMENT_PATH)
    url = f"{broker.base_url}/demo/mcp"
    storage = InMemoryTokenStorage()
    async with McpBrowser("alice", "demo") as browser:
        provider = OAuthClientProvider(url, metadata("none"), storage, browser.redirect_handler,
                                       browser.callback_handler, client_metadata_url=client_id)
        me = await call_whoami(url, provider)
        assert me["client_id"] == client_id and me["email"] == "alice@example.com"
        assert storage.client_info is not None and storage.client_info.client_id == client_id  # no registration
        assert browser.logins == 1 and browser.consent_pages == 1
        provider.context.token_expiry_time = time.time() - 1  # the SDK refreshes with the URL as client_id
        assert (await call_whoami(url, provider))["client_id"] == client_id
    assert document_server.requests and all(r["path"] == DOCUMENT_PATH for r in document_server.requests)
    assert len(document_server.requests) == 1  # max-age=60: one fetch for authorize, token and refresh
    rows = stored_clients(broker)
    assert [r["kind"] for r in rows if r["kind"] == "dcr"] == []  # CIMD, not DCR
    [row] = [r for r in rows if r["client_id"] == client_id]
    assert row["kind"] == "cimd" and row["status"] == "active" and row["name"] == "SDK CIMD e2e client"


async def test_without_allow_loopback_the_same_client_is_refused(guarded_broker: ServerProcess,
                                                                 document_server: HttpsDocumentServer) -> None:
    client_id = document_server.url(DOCUMENT_PATH)
    fetched_before = len(document_server.requests)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
              "code_challenge": "x" * 43, "code_challenge_method": "S256", "state": "s",
              "resource": f"{guarded_broker.base_url}/demo/mcp"}
    async with httpx.AsyncClient(timeout=10) as http:
        page = await http.get(f"{guarded_broker.base_url}/authorize?{urlencode(params)}")
        token = await http.post(f"{guarded_broker.base_url}/token", data={
            "grant_type": "authorization_code", "code": "c", "client_id": client_id, "redirect_uri": REDIRECT_URI,
            "code_verifier": "v" * 43, "resource": f"{guarded_broker.base_url}/demo/mcp"})
    assert page.status_code == 400 and "location" not in page.headers
    assert "127.0.0.1 is a loopback address, which is never fetched from" in page.text
    assert token.json()["error"] == "invalid_client"
    assert len(document_server.requests) == fetched_before  # never connected
    assert [r for r in stored_clients(guarded_broker) if r["kind"] == "cimd"] == []


async def register_key_client(http: httpx.AsyncClient, broker: ServerProcess, jwks_uri: str) -> tuple[str, str]:
    """A DCR ``private_key_jwt`` client whose keys are at ``jwks_uri``: (client id, the broker's issuer)."""
    registered = await http.post(f"{broker.base_url}/register", json={
        "client_name": "Server app", "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_uri})
    assert registered.status_code == 201 and registered.json()["jwks_uri"] == jwks_uri, registered.text
    issuer = (await http.get(f"{broker.base_url}/.well-known/oauth-authorization-server")).json()["issuer"]
    return registered.json()["client_id"], issuer


def signed_revocation(key: ec.EllipticCurvePrivateKey, client_id: str, issuer: str) -> dict[str, str]:
    """An RFC 7009 request authenticated by an RFC 7523 client assertion signed with ``key`` (kid k1)."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": issuer, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
    return {"token": "not-a-token", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})}


@pytest.fixture(scope="module")
def client_key(document_server: HttpsDocumentServer) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    document_server.serve_json(KEYS_PATH, {"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]},
                               headers={"Cache-Control": "max-age=60"})
    return key


async def test_a_registered_jwks_uri_is_fetched_through_the_guard(broker: ServerProcess,
                                                                   document_server: HttpsDocumentServer,
                                                                   client_key: ec.EllipticCurvePrivateKey) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        client_id, issuer = await register_key_client(http, broker, document_server.url(KEYS_PATH))
        signed = await http.post(f"{broker.base_url}/revoke", data=signed_revocation(client_key, client_id, issuer))
        forged = await http.post(f"{broker.base_url}/revoke", data=signed_revocation(
            ec.generate_private_key(ec.SECP256R1()), client_id, issuer))
    assert signed.status_code == 200, signed.text  # the keys were fetched from the client's jwks_uri
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_client", forged.text
    assert [r["path"] for r in document_server.requests].count(KEYS_PATH) >= 1


async def test_without_allow_loopback_a_jwks_uri_on_loopback_is_never_fetched(
        guarded_broker: ServerProcess, document_server: HttpsDocumentServer,
        client_key: ec.EllipticCurvePrivateKey) -> None:
    fetched_before = len(document_server.requests)
    async with httpx.AsyncClient(timeout=10) as http:
        client_id, issuer = await register_key_client(http, guarded_broker, document_server.url(KEYS_PATH))
        refused = await http.post(f"{guarded_broker.base_url}/revoke",
                                  data=signed_revocation(client_key, client_id, issuer))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text
    assert "127.0.0.1 is a loopback address, which is never fetched from" in refused.json()["error_description"]
    assert len(document_server.requests) == fetched_before  # never connected
