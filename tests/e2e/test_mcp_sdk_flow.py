"""The MCP Python SDK's own OAuth client against a real `broker dev` process and its demo MCP server.

The client discovers the broker from the server's Protected Resource Metadata, registers (DCR)
or uses a pre-registered confidential client, logs in at the test IdP, consents, calls the
`whoami` tool, and refreshes; a headless browser (tests/support/mcp_browser.py) plays the user.
The SDK's ``PrivateKeyJWTOAuthProvider`` (client credentials, ``private_key_jwt``) needs no user.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.client.auth.extensions.client_credentials import PrivateKeyJWTOAuthProvider, SignedJWTParameters
from mcp.client.auth.oauth2 import OAuthClientProvider
from mcp.shared.auth import OAuthClientInformationFull

from broker.dev import DEV_POLICY
from tests.support import dpop_client
from tests.support.dpop import DpopKey
from tests.support.dpop_client import DpopAuth
from tests.support.http_flow import register_public_client
from tests.support.mcp_browser import McpBrowser
from tests.support.mcp_client import REDIRECT_URI, InMemoryTokenStorage, call_whoami, metadata
from tests.support.processes import BROKER, ServerProcess, run_broker

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("broker")
    server = ServerProcess([*BROKER, "dev", "--port", "{port}", "--data-dir", str(base / "var")], env={},
                           log_path=base / "dev.log", cwd=base)
    with server:
        yield server


@pytest.fixture
async def browser() -> AsyncIterator[McpBrowser]:
    async with McpBrowser("alice", "demo") as headless:
        yield headless


async def test_sdk_client_registers_logs_in_calls_and_refreshes(broker: ServerProcess, browser: McpBrowser) -> None:
    url = f"{broker.base_url}/demo/mcp"
    storage = InMemoryTokenStorage()
    provider = OAuthClientProvider(url, metadata("none"), storage, browser.redirect_handler, browser.callback_handler)
    me = await call_whoami(url, provider)
    assert me["email"] == "alice@example.com" and set(me["scopes"]) == {"tools:read", "tools:call"}
    assert storage.client_info is not None and storage.client_info.client_id.startswith("mcp_")  # DCR
    assert browser.logins == 1 and browser.consent_pages == 1
    first = storage.tokens
    provider.context.token_expiry_time = time.time() - 1  # the access token "expired": the SDK refreshes
    again = await call_whoami(url, provider)
    assert again["sub"] == me["sub"] and browser.logins == 1  # no second login
    assert storage.tokens.refresh_token != first.refresh_token  # rotated


async def test_pre_registered_confidential_client(broker: ServerProcess, browser: McpBrowser, tmp_path: Path) -> None:
    data_dir = Path(broker.args[broker.args.index("--data-dir") + 1])
    created = run_broker("clients", "add", "--name", "Pre-registered agent", "--confidential", "--redirect-uri",
                         REDIRECT_URI, "--json", "--data-dir", str(data_dir), env={})
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    info = OAuthClientInformationFull(client_id=record["client_id"], client_secret=record["client_secret"],
                                      redirect_uris=[REDIRECT_URI], token_endpoint_auth_method="client_secret_basic",
                                      grant_types=["authorization_code", "refresh_token"])
    storage = InMemoryTokenStorage(info)
    url = f"{broker.base_url}/demo/mcp"
    provider = OAuthClientProvider(url, metadata("client_secret_basic"), storage, browser.redirect_handler,
                                   browser.callback_handler)
    me = await call_whoami(url, provider)
    assert me["client_id"] == record["client_id"] and me["email"] == "alice@example.com"
    provider.context.token_expiry_time = time.time() - 1
    assert (await call_whoami(url, provider))["client_id"] == record["client_id"]
    assert len(storage.history) == 2


def broker_cli(broker: ServerProcess, *args: str) -> str:
    data_dir = broker.args[broker.args.index("--data-dir") + 1]
    done = run_broker(*args, "--data-dir", data_dir, env={})
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_sdk_private_key_jwt_client_credentials(broker: ServerProcess, tmp_path: Path) -> None:
    """``broker clients add --auth-method private_key_jwt --jwks FILE``: the SDK signs its assertion (RS256, no
    ``kid``, ``aud`` the issuer) and gets a token for the demo server that policy grants the client."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**public, "alg": "RS256", "use": "sig"}]}))
    client_id = json.loads(broker_cli(broker, "clients", "add", "--name", "Signer", "--auth-method", "private_key_jwt",
                                      "--jwks", str(tmp_path / "jwks.json"), "--client-credentials",
                                      "--scope", "tools:read", "--scope", "tools:call", "--json"))["client_id"]
    (tmp_path / "policy.toml").write_text(DEV_POLICY + f'''
[[rules]]
id = "signer-demo"
effect = "allow"
scopes = "*"
[rules.subjects]
clients = ["{client_id}"]
[rules.targets]
servers = ["demo"]
''')
    broker_cli(broker, "policy", "import", str(tmp_path / "policy.toml"))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    signer = SignedJWTParameters(issuer=client_id, subject=client_id, signing_key=pem)
    url = f"{broker.base_url}/demo/mcp"
    provider = PrivateKeyJWTOAuthProvider(url, InMemoryTokenStorage(), client_id, signer.create_assertion_provider(),
                                          scope="tools:read tools:call", issuer=broker.base_url)
    me = await call_whoami(url, provider)
    assert me["client_id"] == client_id and set(me["scopes"]) == {"tools:read", "tools:call"}


async def test_dpop_client_signs_in_refreshes_and_calls_whoami_with_bound_tokens(broker: ServerProcess) -> None:
    """RFC 9449 end to end against ``broker dev``: the code bound with ``dpop_jkt``, DPoP-bound tokens at /token,
    the SDK's MCP client calling the demo server with ``Authorization: DPoP``, a refresh with the same key."""
    base, url, key = broker.base_url, f"{broker.base_url}/demo/mcp", DpopKey()
    client_id = register_public_client(base)
    tokens = dpop_client.sign_in(base, client_id, url, "alice", "demo", key)
    assert tokens["token_type"] == "DPoP"
    assert jwt.decode(tokens["access_token"], options={"verify_signature": False})["cnf"] == {"jkt": key.jkt}
    assert (await call_whoami(url, DpopAuth(key, tokens["access_token"])))["email"] == "alice@example.com"
    as_bearer = httpx.post(url, json={}, headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert as_bearer.status_code == 401  # RFC 9449 §7.2: a bound token is no bearer token
    assert 'error="invalid_token"' in as_bearer.headers["www-authenticate"]
    refreshed = dpop_client.refresh(base, client_id, tokens["refresh_token"], url, key)
    assert refreshed.status_code == 200, refreshed.text
    again = refreshed.json()
    assert again["token_type"] == "DPoP" and again["access_token"] != tokens["access_token"]
    assert (await call_whoami(url, DpopAuth(key, again["access_token"])))["sub"] == jwt.decode(
        tokens["access_token"], options={"verify_signature": False})["sub"]
    # RFC 9449 §5: a public client's refresh token needs its key too
    stolen = dpop_client.refresh(base, client_id, again["refresh_token"], url, DpopKey())
    assert stolen.status_code == 400 and stolen.json()["error"] in ("invalid_dpop_proof", "invalid_grant")
