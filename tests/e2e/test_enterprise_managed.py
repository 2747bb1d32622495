"""Enterprise-Managed Authorization end to end, with real processes (issue 8, item 3).

- Broker A runs the test IdP, which issues ID-JAGs (RFC 8693 token exchange); A redeems them
  (jwt-bearer grant) for its MCP server MCP-A. The client is the MCP Python SDK's
  ``IdentityAssertionOAuthProvider`` with its default client authentication, ``client_secret_post``
  (``broker clients add --auth-method client_secret_post``).
- Broker A is also the enterprise IdP for broker B: a client signs its user in at A (OpenID
  Connect), exchanges the ID token at A for an ID-JAG for B, and the SDK redeems it at B for MCP-B.
  Like MCP Inspector's Enterprise-Managed flow, every leg sends the client secret in the body
  (``client_secret_post``): the test IdP's exchange, A's code and exchange, B's jwt-bearer grant.
- Policy at the IdP side (A decides who may reach B's server) and offboarding stop both paths.

Four processes on loopback: two ``broker serve`` and two ``examples/protected_server.py``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider

from tests.support.broker_config import ALICE, BOB, dev_settings, merged, with_testidp, write
from tests.support.mcp_client import InMemoryTokenStorage, call_whoami
from tests.support.oauth_flow import _ACTION, hidden_fields, pkce
from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess, run_broker

pytestmark = pytest.mark.e2e
REDIRECT = "http://127.0.0.1:9/cb"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
AGENT_SECRET = "agent-secret-0123456789abcdef"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "protected_server.py"


@dataclass
class Setup:
    a: ServerProcess
    b: ServerProcess
    mcp_a: str
    mcp_b: str
    env_a: dict[str, str]
    env_b: dict[str, str]
    agent_a: dict  # A's client for path (a): redeems test-IdP ID-JAGs
    app_a: dict  # A's client for path (b): signs users in, exchanges their ID tokens
    agent_b: dict  # B's client for path (b): redeems A's ID-JAGs


def config_a(issuer: str, issuer_b: str, mcp_b: str, tmp: Path) -> dict:
    """Broker A: the test IdP (also issuing ID-JAGs for A itself) and token exchange for B."""
    agent = {"client_id": "agent", "client_secret": AGENT_SECRET, "redirect_uris": [REDIRECT],
             "resource_client_id": "agent-a"}
    return dev_settings(issuer, f"sqlite:///{tmp / 'a.db'}", **merged(
        with_testidp(issuer, users=[ALICE, BOB], clients=[agent], id_jag_audiences=[issuer]),
        {"id_jag": {"trusted_issuers": [{"id": "testidp", "issuer": f"{issuer}/testidp",
                                         "jwks_uri": f"{issuer}/testidp/jwks", "algorithms": ["ES256"],
                                         "idp": "test", "provision_users": True}],
                    "audiences": [{"issuer": issuer_b, "resources": [mcp_b], "clients": {"app-a": "agent-b"}}]}}))


def config_b(issuer: str, issuer_a: str, tmp: Path) -> dict:
    """Broker B: trusts broker A's ID-JAGs."""
    return dev_settings(issuer, f"sqlite:///{tmp / 'b.db'}", id_jag={"trusted_issuers": [
        {"id": "broker-a", "issuer": issuer_a, "jwks_uri": f"{issuer_a}/jwks", "algorithms": ["ES256"],
         "provision_users": True}]})


POLICY_A = '''# Path (a): anyone from the test IdP reaches MCP-A, except bob. Path (b): engineering reaches B's server.
[[rules]]
id = "no-bob"
effect = "deny"
scopes = "*"
[rules.subjects]
users = ["bob@example.com"]
[rules.targets]
all = true

[[rules]]
id = "test-idp-users-mcp-a"
effect = "allow"
scopes = "*"
[rules.subjects]
idps = ["test"]
[rules.targets]
servers = ["mcp-a"]

[[rules]]
id = "engineering-partner"
effect = "allow"
scopes = ["tools:read", "tools:call"]
[rules.subjects]
groups = ["engineering"]
[rules.targets]
servers = ["partner-mcp"]
'''
POLICY_B = '''[[rules]]
id = "everyone"
effect = "allow"
scopes = "*"
[rules.subjects]
everyone = true
[rules.targets]
servers = ["mcp-b"]
'''


def broker_cli(env: dict[str, str], *args: str) -> str:
    done = run_broker(*args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("ema")
    port_a, port_b, port_mcp_a, port_mcp_b = (free_port() for _ in range(4))
    issuer_a, issuer_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    mcp_a, mcp_b = f"http://127.0.0.1:{port_mcp_a}/demo/mcp", f"http://127.0.0.1:{port_mcp_b}/demo/mcp"
    write(tmp / "a.toml", config_a(issuer_a, issuer_b, mcp_b, tmp))
    write(tmp / "b.toml", config_b(issuer_b, issuer_a, tmp))
    (tmp / "policy-a.toml").write_text(POLICY_A)
    (tmp / "policy-b.toml").write_text(POLICY_B)
    env_a, env_b = {"BROKER_CONFIG": str(tmp / "a.toml")}, {"BROKER_CONFIG": str(tmp / "b.toml")}
    scopes = ["--scopes", "tools:read tools:call"]
    broker_cli(env_a, "db", "upgrade")
    broker_cli(env_a, "servers", "add", "--id", "mcp-a", "--name", "MCP A", "--resource", mcp_a, *scopes)
    broker_cli(env_a, "servers", "add", "--id", "partner-mcp", "--name", "Partner MCP", "--resource", mcp_b, *scopes)
    broker_cli(env_a, "policy", "import", str(tmp / "policy-a.toml"))
    # The SDK's IdentityAssertionOAuthProvider authenticates with client_secret_post unless told otherwise.
    agent_a = json.loads(broker_cli(env_a, "clients", "add", "--id", "agent-a", "--name", "Agent",
                                    "--auth-method", "client_secret_post", "--id-jag", "--json"))
    app_a = json.loads(broker_cli(env_a, "clients", "add", "--id", "app-a", "--name", "Desktop app",
                                  "--auth-method", "client_secret_post", "--redirect-uri", REDIRECT, "--trusted",
                                  "--token-exchange", "--json"))
    broker_cli(env_b, "db", "upgrade")
    broker_cli(env_b, "servers", "add", "--id", "mcp-b", "--name", "MCP B", "--resource", mcp_b, *scopes)
    broker_cli(env_b, "policy", "import", str(tmp / "policy-b.toml"))
    agent_b = json.loads(broker_cli(env_b, "clients", "add", "--id", "agent-b", "--name", "Agent at B",
                                    "--auth-method", "client_secret_post", "--auth-method", "client_secret_basic",
                                    "--id-jag", "--json"))
    a = ServerProcess([*BROKER, "serve", "--port", str(port_a)], env=env_a, log_path=tmp / "a.log", port=port_a)
    b = ServerProcess([*BROKER, "serve", "--port", str(port_b)], env=env_b, log_path=tmp / "b.log", port=port_b)
    server_a = ServerProcess([sys.executable, str(EXAMPLE), "--issuer", issuer_a, "--port", str(port_mcp_a)], env={},
                             log_path=tmp / "mcp-a.log", port=port_mcp_a)
    server_b = ServerProcess([sys.executable, str(EXAMPLE), "--issuer", issuer_b, "--port", str(port_mcp_b)], env={},
                             log_path=tmp / "mcp-b.log", port=port_mcp_b)
    ready = "/.well-known/oauth-protected-resource/demo/mcp"
    with a, b:
        try:
            server_a.start(ready_path=ready)
            server_b.start(ready_path=ready)
            yield Setup(a, b, mcp_a, mcp_b, env_a, env_b, agent_a, app_a, agent_b)
        finally:
            server_a.stop()
            server_b.stop()


# ---------------------------------------------------------------- path (a): test IdP -> broker A


def idp_id_token(setup: Setup, username: str) -> str:
    """The agent signs its user in at the test IdP (its own OIDC client there); the ID token."""
    verifier, challenge = pkce()
    with httpx.Client(base_url=setup.a.base_url, timeout=10) as browser:
        params = {"response_type": "code", "client_id": "agent", "redirect_uri": REDIRECT, "scope": "openid email",
                  "state": "s", "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256"}
        page = browser.get("/testidp/authorize?" + urlencode(params))
        assert page.status_code == 200, page.text
        fields = {**hidden_fields(page.text), "username": username, "password": f"{username}-pw"}
        redirect = browser.post("/testidp/authorize", data=fields)
        code = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
        tokens = browser.post("/testidp/token", data={"grant_type": "authorization_code", "code": code,
                                                      "redirect_uri": REDIRECT, "code_verifier": verifier},
                              auth=("agent", AGENT_SECRET))
    assert tokens.status_code == 200, tokens.text
    return tokens.json()["id_token"]


def idp_assertion_provider(setup: Setup, username: str, exchanges: list[httpx.Response]):
    """The SDK's ``assertion_provider``: leg 1 of the extension, token exchange at the test IdP."""
    id_token = idp_id_token(setup, username)

    async def fetch(audience: str, resource: str) -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(f"{setup.a.base_url}/testidp/token", data={
                "client_id": "agent", "client_secret": AGENT_SECRET, "grant_type": EXCHANGE,
                "requested_token_type": ID_JAG, "subject_token": id_token,
                "subject_token_type": ID_TOKEN, "audience": audience, "resource": resource,
                "scope": "tools:read tools:call"})
        exchanges.append(response)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    return fetch


async def test_sdk_redeems_a_test_idp_id_jag_at_the_broker_and_calls_the_server(setup: Setup) -> None:
    exchanges: list[httpx.Response] = []
    provider = IdentityAssertionOAuthProvider(
        server_url=setup.mcp_a, storage=InMemoryTokenStorage(), client_id="agent-a",
        client_secret=setup.agent_a["client_secret"], issuer=setup.a.base_url,
        assertion_provider=idp_assertion_provider(setup, "alice", exchanges))
    me = await call_whoami(setup.mcp_a, provider)
    assert me["email"] == "alice@example.com" and me["client_id"] == "agent-a"
    assert set(me["scopes"]) == {"tools:read", "tools:call"} and len(exchanges) == 1


async def test_policy_at_the_resource_as_refuses_bob(setup: Setup) -> None:
    provider = IdentityAssertionOAuthProvider(
        server_url=setup.mcp_a, storage=InMemoryTokenStorage(), client_id="agent-a",
        client_secret=setup.agent_a["client_secret"], issuer=setup.a.base_url,
        assertion_provider=idp_assertion_provider(setup, "bob", []))
    with pytest.raises(BaseException) as refused:
        await call_whoami(setup.mcp_a, provider)
    assert "invalid_grant" in _text(refused.value)


# ---------------------------------------------------------------- path (b): broker A as IdP -> broker B


def sign_in_at_a(setup: Setup, username: str) -> dict:
    """OpenID Connect sign-in at broker A (no MCP server), through A's test IdP; A's tokens."""
    verifier, challenge = pkce()
    with httpx.Client(base_url=setup.a.base_url, timeout=10) as browser:
        params = {"response_type": "code", "client_id": "app-a", "redirect_uri": REDIRECT, "state": "s",
                  "scope": "openid email offline_access", "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        response = browser.get("/authorize?" + urlencode(params))
        assert response.status_code == 302, response.text
        form_page = browser.get(response.headers["location"])
        fields = {**hidden_fields(form_page.text), "username": username, "password": f"{username}-pw"}
        response = browser.post(_ACTION.search(form_page.text).group(1), data=fields)
        response = browser.get(response.headers["location"])
        code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
        tokens = browser.post("/token", data={"grant_type": "authorization_code", "code": code,
                                              "redirect_uri": REDIRECT, "code_verifier": verifier,
                                              "client_id": "app-a", "client_secret": setup.app_a["client_secret"]})
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


def exchange_at_a(setup: Setup, id_token: str, audience: str, resource: str) -> httpx.Response:
    return httpx.post(f"{setup.a.base_url}/token", timeout=10, data={
        "client_id": "app-a", "client_secret": setup.app_a["client_secret"], "grant_type": EXCHANGE,
        "requested_token_type": ID_JAG, "subject_token": id_token,
        "subject_token_type": ID_TOKEN, "audience": audience, "resource": resource, "scope": "tools:read tools:call"})


def broker_a_assertion_provider(setup: Setup, id_token: str):
    async def fetch(audience: str, resource: str) -> str:
        response = exchange_at_a(setup, id_token, audience, resource)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    return fetch


async def test_broker_a_is_the_idp_for_broker_b(setup: Setup) -> None:
    tokens = sign_in_at_a(setup, "alice")
    provider = IdentityAssertionOAuthProvider(
        server_url=setup.mcp_b, storage=InMemoryTokenStorage(), client_id="agent-b",
        client_secret=setup.agent_b["client_secret"], issuer=setup.b.base_url,
        assertion_provider=broker_a_assertion_provider(setup, tokens["id_token"]))
    me = await call_whoami(setup.mcp_b, provider)
    assert me["client_id"] == "agent-b" and me["email"] == "alice@example.com"
    assert set(me["scopes"]) == {"tools:read", "tools:call"}
    # app-a registered client_secret_post: HTTP Basic is refused, and the refusal names what the request used.
    as_basic = httpx.post(f"{setup.a.base_url}/token", auth=("app-a", setup.app_a["client_secret"]), data={
        "grant_type": EXCHANGE, "requested_token_type": ID_JAG, "subject_token": tokens["id_token"],
        "subject_token_type": ID_TOKEN, "audience": setup.b.base_url, "resource": setup.mcp_b})
    assert as_basic.status_code == 401 and as_basic.json()["error_description"] == (
        "the client is registered for client_secret_post; the request used client_secret_basic")
    # A's ID-JAG is for B: A itself refuses it, and B refuses it a second time (single-use jti).
    jag = exchange_at_a(setup, tokens["id_token"], setup.b.base_url, setup.mcp_b).json()["access_token"]
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": jag, "resource": setup.mcp_b}
    at_a = httpx.post(f"{setup.a.base_url}/token",
                      data={**grant, "client_id": "agent-a", "client_secret": setup.agent_a["client_secret"]})
    assert at_a.status_code == 400 and at_a.json()["error"] == "invalid_grant"
    first = httpx.post(f"{setup.b.base_url}/token", data=grant, auth=("agent-b", setup.agent_b["client_secret"]))
    again = httpx.post(f"{setup.b.base_url}/token", data=grant, auth=("agent-b", setup.agent_b["client_secret"]))
    assert first.status_code == 200 and again.json()["error"] == "invalid_grant"


def test_policy_at_the_idp_side_denies_bob(setup: Setup) -> None:
    tokens = sign_in_at_a(setup, "bob")
    refused = exchange_at_a(setup, tokens["id_token"], setup.b.base_url, setup.mcp_b)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


# ---------------------------------------------------------------- (c) offboarding stops both paths


async def test_offboarding_at_a_stops_both_paths(setup: Setup) -> None:
    tokens = sign_in_at_a(setup, "alice")
    jag_for_a = await idp_assertion_provider(setup, "alice", [])(setup.a.base_url, setup.mcp_a)
    broker_cli(setup.env_a, "users", "revoke", "alice@example.com", "--reason", "left the company")
    try:
        refused_b = exchange_at_a(setup, tokens["id_token"], setup.b.base_url, setup.mcp_b)  # (b): A is the IdP
        assert refused_b.status_code == 400 and refused_b.json()["error"] == "invalid_grant"
        refused_a = httpx.post(f"{setup.a.base_url}/token",
                               data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                     "assertion": jag_for_a, "resource": setup.mcp_a, "client_id": "agent-a",
                                     "client_secret": setup.agent_a["client_secret"]})  # (a): A is the resource AS
        assert refused_a.status_code == 400 and refused_a.json()["error"] == "invalid_grant"
    finally:
        broker_cli(setup.env_a, "users", "restore", "alice@example.com", "--reason", "e2e cleanup")


def _text(error: BaseException) -> str:
    parts = [str(error)]
    for inner in getattr(error, "exceptions", ()):
        parts.append(_text(inner))
    return " ".join(parts)
