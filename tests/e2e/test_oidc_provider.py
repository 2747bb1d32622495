"""The broker federated to a real certified OpenID provider, with the MCP SDK's client in front.

Four real processes: ``oidc-provider`` from npm (tests/support/oidc_provider/) as the company IdP
``corp``; ``broker serve`` in production mode with that IdP as its one ``[[idps]]`` (type ``oidc``);
``examples/protected_server.py`` as the MCP server; and this test as the MCP client
(``OAuthClientProvider``), with a headless browser playing the user. The client discovers the broker
from the server's metadata, registers by DCR; the user signs in and consents at the provider, then
consents at the broker; the provider's ID token carries ``groups``, which become the user's group
memberships (source ``idp:corp``), the input policy reads.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client.auth.oauth2 import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from broker import config
from tests.support.broker_config import write
from tests.support.mcp_browser import BrowserError
from tests.support.oidc_provider import OidcProvider, ProviderBrowser, ProviderClient, ProviderUser
from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess, everyone_may_reach, run_broker

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
IDP_ID = "corp"
REDIRECT_URI = "http://127.0.0.1:33419/callback"  # the MCP client's; never requested
FLOW_TIMEOUT_S = 60
ALICE = ProviderUser("alice", "alice-corp-password", "alice@corp.example", "Alice Anders",
                     groups=("engineering", "platform"), sub="00u-alice")
BOB = ProviderUser("bob", "bob-corp-password", "bob@corp.example", "Bob Brown", groups=("sales",), sub="00u-bob")


@dataclass
class Federation:
    """The running processes; ``idp`` changes when a test restarts the provider."""

    workdir: Path
    idp: OidcProvider
    idp_client: ProviderClient
    broker: ServerProcess
    mcp: ServerProcess
    database: Path

    @property
    def mcp_url(self) -> str:
        return f"{self.mcp.base_url}/demo/mcp"

    def restart_idp(self, users: list[ProviderUser]) -> None:
        """Stop the provider (it must exit cleanly) and start it again, same port and keys, new users."""
        assert self.idp.stop() == 0, self.idp.output()
        self.idp = OidcProvider(self.workdir / "idp", clients=[self.idp_client], users=users,
                                port=self.idp.port).start()


def broker_config(path: Path, *, issuer: str, port: int, database: Path, idp: OidcProvider,
                  client: ProviderClient) -> Path:
    write(path, {"mode": "production", "issuer": issuer, "data_dir": str(path.parent),
                 "database": {"url": f"sqlite:///{database}"}, "keys": {"key_encryption_key": config.new_kek()},
                 "registration": {"enabled": True}, "server": {"host": "127.0.0.1", "port": port},
                 "idps": [{"id": IDP_ID, "type": "oidc", "display_name": "Corp SSO", "issuer": idp.issuer,
                           "client_id": client.client_id, "client_secret": client.client_secret,
                           "scopes": ["openid", "email", "profile", "groups"]}]})
    path.chmod(0o600)
    return path


def broker_cli(*args: str, config_path: Path) -> str:
    done = run_broker(*args, "--config", str(config_path), env={})
    assert done.returncode == 0, f"broker {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    base = tmp_path_factory.mktemp("federation")
    broker_port = free_port()
    broker_issuer = f"http://127.0.0.1:{broker_port}"  # the provider's client needs the callback URL first
    idp_client = ProviderClient("mcp-auth-broker", secrets.token_urlsafe(32),
                                redirect_uris=(f"{broker_issuer}/callback/{IDP_ID}",))
    idp = OidcProvider(base / "idp", clients=[idp_client], users=[ALICE, BOB])
    assert idp.port != broker_port
    database = base / "broker-state" / "broker.db"  # not "broker": cwd would shadow the package
    database.parent.mkdir()
    config_path = broker_config(base / "broker-state" / "broker.toml", issuer=broker_issuer, port=broker_port,
                                database=database, idp=idp, client=idp_client)
    mcp = ServerProcess([sys.executable, str(REPO / "examples" / "protected_server.py"), "--issuer", broker_issuer,
                         "--port", "{port}"], env={}, log_path=base / "mcp.log", cwd=REPO)
    broker = ServerProcess([*BROKER, "serve", "--config", str(config_path)], env={},
                           log_path=base / "broker-state" / "serve.log", port=broker_port, cwd=base)
    running = Federation(base, idp, idp_client, broker, mcp, database)
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: running.idp.stop())  # whichever provider runs at the end
        idp.start()
        broker_cli("db", "upgrade", config_path=config_path)
        broker_cli("servers", "add", "--id", "demo", "--name", "Demo", "--resource", running.mcp_url,
                   "--scopes", "tools:read tools:call", config_path=config_path)
        broker_cli("policy", "import", str(everyone_may_reach("demo", base)), config_path=config_path)
        stack.enter_context(broker)
        stack.callback(mcp.stop)
        mcp.start(ready_path="/.well-known/oauth-protected-resource/demo/mcp")
        yield running


class InMemoryTokenStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


async def sign_in_and_call_whoami(federation: Federation, browser: ProviderBrowser,
                                  storage: InMemoryTokenStorage | None = None) -> dict:
    """A new MCP client (DCR) connects, the browser signs in, and the client calls ``whoami``."""
    metadata = OAuthClientMetadata(client_name="oidc-provider e2e client", redirect_uris=[REDIRECT_URI],
                                   grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                                   token_endpoint_auth_method="none")
    provider = OAuthClientProvider(federation.mcp_url, metadata, storage or InMemoryTokenStorage(),
                                   browser.redirect_handler, browser.callback_handler)
    with anyio.fail_after(FLOW_TIMEOUT_S):
        async with httpx2.AsyncClient(auth=provider, timeout=30, follow_redirects=False) as http:
            async with streamable_http_client(federation.mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    result = await session.call_tool("whoami", {})
    assert not result.is_error, result
    return json.loads(result.content[0].text)


def idp_groups(database: Path, user_id: str) -> set[str]:
    """The user's groups from the IdP, as the broker stored them for policy (``group_memberships``)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute("SELECT g.name FROM group_memberships m JOIN groups g ON g.id = m.group_id "
                          "WHERE m.user_id = ? AND g.source = ?", (user_id, f"idp:{IDP_ID}")).fetchall()
    return {name for (name,) in rows}


def broker_user_for(database: Path, subject: str) -> str | None:
    """The broker user keyed by (IdP, subject) at the provider."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as db:
        row = db.execute("SELECT user_id FROM upstream_identities WHERE idp_id = ? AND subject = ?",
                         (IDP_ID, subject)).fetchone()
    return row[0] if row else None


async def test_sdk_client_signs_in_at_oidc_provider_and_the_groups_reach_policy_input(
        federation: Federation) -> None:
    storage = InMemoryTokenStorage()
    async with ProviderBrowser(federation.idp.issuer, ALICE.username, ALICE.password) as browser:
        me = await sign_in_and_call_whoami(federation, browser, storage)
    assert me["email"] == ALICE.email and set(me["scopes"]) == {"tools:read", "tools:call"}
    assert storage.client_info is not None and storage.client_info.client_id.startswith("mcp_")  # DCR
    assert (browser.logins, browser.upstream_consent_pages, browser.consent_pages) == (1, 1, 1)
    assert any(entry.startswith(f"POST {federation.idp.issuer}/interaction/") for entry in browser.history)
    assert broker_user_for(federation.database, ALICE.sub) == me["sub"]
    assert idp_groups(federation.database, me["sub"]) == {"engineering", "platform"}


async def test_wrong_password_at_the_provider_signs_nobody_in(federation: Federation) -> None:
    refused = pytest.RaisesExc(BrowserError, match="login refused: Invalid username or password")
    async with ProviderBrowser(federation.idp.issuer, ALICE.username, "not-alices-password") as browser:
        with pytest.RaisesGroup(refused, allow_unwrapped=True, flatten_subgroups=True):  # the SDK's task group
            await sign_in_and_call_whoami(federation, browser)
    assert browser.logins == 1 and browser.last_redirect is None  # the form came back; no code


async def test_group_changes_at_the_provider_replace_memberships_at_the_next_login(federation: Federation) -> None:
    async with ProviderBrowser(federation.idp.issuer, BOB.username, BOB.password) as browser:
        before = await sign_in_and_call_whoami(federation, browser)
    assert idp_groups(federation.database, before["sub"]) == {"sales"}

    federation.restart_idp([ALICE, replace(BOB, groups=("sales", "support-escalations"))])
    async with ProviderBrowser(federation.idp.issuer, BOB.username, BOB.password) as browser:
        after = await sign_in_and_call_whoami(federation, browser)  # a new client, a new upstream login
    assert browser.logins == 1 and after["sub"] == before["sub"] and after["email"] == BOB.email
    assert idp_groups(federation.database, after["sub"]) == {"sales", "support-escalations"}

    federation.restart_idp([ALICE, replace(BOB, groups=())])
    async with ProviderBrowser(federation.idp.issuer, BOB.username, BOB.password) as browser:
        await sign_in_and_call_whoami(federation, browser)
    assert idp_groups(federation.database, after["sub"]) == set()  # left every group upstream
