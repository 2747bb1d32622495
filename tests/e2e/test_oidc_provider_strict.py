"""The broker federated to oidc-provider at its strict defaults, with the upstream check on.

oidc-provider as shipped puts the claims of the granted scopes only at UserInfo when it issues an access
token (OIDC Core §5.4), and issues refresh tokens only for ``offline_access`` asked with
``prompt=consent`` (OIDC Core §11). The broker must therefore call UserInfo to learn the user's email and
groups (policy here allows the group ``engineering`` only), and ask for ``offline_access`` with
``prompt=consent`` so that ``check_upstream_on_refresh`` has a refresh token to check with: once the user's
grant is revoked at the provider, the next refresh at the broker fails. Offboarding at the broker
revokes that refresh token at the provider's revocation endpoint (RFC 7009), which ends the grant there.

Four real processes: oidc-provider (strict), ``broker serve`` (production mode), the demo MCP server,
and this test as the MCP Python SDK client with a headless browser playing the user.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker import config
from tests.e2e.test_oidc_provider import (
    Federation,
    InMemoryTokenStorage,
    broker_cli,
    broker_user_for,
    idp_groups,
    sign_in_and_call_whoami,
)
from tests.support.oidc_provider import OidcProvider, ProviderBrowser, ProviderClient, ProviderUser
from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
IDP_ID = "corp"
ALICE = ProviderUser("alice", "alice-corp-password", "alice@corp.example", "Alice Anders",
                     groups=("engineering",), sub="00u-alice")
POLICY = '''[[rules]]
id = "engineering-demo"
effect = "allow"
scopes = "*"
[rules.subjects]
groups = ["engineering"]
[rules.targets]
servers = ["demo"]
'''


def broker_config(path: Path, *, issuer: str, port: int, database: Path, idp: OidcProvider,
                  client: ProviderClient) -> Path:
    s = json.dumps  # a JSON string is a TOML basic string
    path.write_text(f"""\
mode = "production"
issuer = {s(issuer)}
data_dir = {s(str(path.parent))}

[database]
url = {s(f"sqlite:///{database}")}

[keys]
key_encryption_key = {s(config.new_kek())}

[registration]
enabled = true

[[idps]]
id = {s(IDP_ID)}
type = "oidc"
issuer = {s(idp.issuer)}
client_id = {s(client.client_id)}
client_secret = {s(client.client_secret)}
scopes = ["openid", "email", "profile", "groups"]
check_upstream_on_refresh = true
""", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    base = tmp_path_factory.mktemp("strict")
    broker_port = free_port()
    broker_issuer = f"http://127.0.0.1:{broker_port}"
    idp_client = ProviderClient("mcp-auth-broker", secrets.token_urlsafe(32),
                                redirect_uris=(f"{broker_issuer}/callback/{IDP_ID}",))
    idp = OidcProvider(base / "idp", clients=[idp_client], users=[ALICE], strict=True)
    database = base / "broker-state" / "broker.db"
    database.parent.mkdir()
    config_path = broker_config(base / "broker-state" / "broker.toml", issuer=broker_issuer, port=broker_port,
                                database=database, idp=idp, client=idp_client)
    (base / "policy.toml").write_text(POLICY)
    mcp = ServerProcess([sys.executable, str(REPO / "examples" / "protected_server.py"), "--issuer", broker_issuer,
                         "--port", "{port}"], env={}, log_path=base / "mcp.log", cwd=REPO)
    broker = ServerProcess([*BROKER, "serve", "--config", str(config_path), "--port", str(broker_port)], env={},
                           log_path=base / "broker-state" / "serve.log", port=broker_port, cwd=base)
    running = Federation(base, idp, idp_client, broker, mcp, database)
    with contextlib.ExitStack() as stack:
        stack.callback(idp.stop)
        idp.start()
        broker_cli("db", "upgrade", config_path=config_path)
        broker_cli("servers", "add", "--id", "demo", "--name", "Demo", "--resource", running.mcp_url,
                   "--scopes", "tools:read tools:call", config_path=config_path)
        broker_cli("policy", "import", str(base / "policy.toml"), config_path=config_path)
        stack.enter_context(broker)
        stack.callback(mcp.stop)
        mcp.start(ready_path="/.well-known/oauth-protected-resource/demo/mcp")
        yield running


def stored_upstream_token(database: Path, user_id: str) -> bytes | None:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as db:
        row = db.execute("SELECT refresh_token_encrypted FROM upstream_identities WHERE user_id = ? AND idp_id = ?",
                         (user_id, IDP_ID)).fetchone()
    return row[0] if row else None


def refresh_at_the_broker(federation: Federation, storage: InMemoryTokenStorage) -> httpx.Response:
    assert storage.tokens is not None and storage.tokens.refresh_token and storage.client_info is not None
    response = httpx.post(f"{federation.broker.base_url}/token", timeout=30, data={
        "grant_type": "refresh_token", "refresh_token": storage.tokens.refresh_token,
        "client_id": storage.client_info.client_id, "resource": federation.mcp_url})
    if response.status_code == 200:
        storage.tokens = storage.tokens.model_copy(update={"refresh_token": response.json()["refresh_token"]})
    return response


async def test_userinfo_claims_reach_policy_and_a_revoked_grant_stops_the_next_refresh(
        federation: Federation) -> None:
    storage = InMemoryTokenStorage()
    async with ProviderBrowser(federation.idp.issuer, ALICE.username, ALICE.password) as browser:
        me = await sign_in_and_call_whoami(federation, browser, storage)
    # The ID token carried the subject only: email and groups came from UserInfo, and policy let them in.
    assert me["email"] == ALICE.email and set(me["scopes"]) == {"tools:read", "tools:call"}
    assert broker_user_for(federation.database, ALICE.sub) == me["sub"]
    assert idp_groups(federation.database, me["sub"]) == {"engineering"}
    # offline_access with prompt=consent: the provider showed its consent page and issued a refresh token.
    assert browser.upstream_consent_pages == 1
    assert stored_upstream_token(federation.database, me["sub"]) is not None

    first = refresh_at_the_broker(federation, storage)
    assert first.status_code == 200, first.text  # checked upstream, accepted

    assert federation.idp.revoke_grants(ALICE.sub) >= 1  # alice removes the application at the provider
    refused = refresh_at_the_broker(federation, storage)
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"error": "invalid_grant",
                              "error_description": "the identity provider no longer accepts this sign-in"}
    assert stored_upstream_token(federation.database, me["sub"]) is None

    log = federation.broker.log_path.read_text()
    assert "check_upstream_on_refresh for IdP corp: sign-ins ask for offline_access with prompt=consent" in log
    assert "cannot run" not in log and "sent no" not in log


def upstream_revocation_results(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute("SELECT data FROM audit_events WHERE event_type = 'upstream.refresh_token_revoked' "
                          "ORDER BY id").fetchall()
    return [json.loads(data)["result"] for (data,) in rows]


async def test_offboarding_revokes_the_users_grant_at_the_provider(federation: Federation) -> None:
    config_path = federation.workdir / "broker-state" / "broker.toml"
    async with ProviderBrowser(federation.idp.issuer, ALICE.username, ALICE.password) as browser:
        me = await sign_in_and_call_whoami(federation, browser, InMemoryTokenStorage())
    assert stored_upstream_token(federation.database, me["sub"]) is not None
    try:
        broker_cli("users", "revoke", ALICE.email, "--reason", "left the company", config_path=config_path)
        deadline = time.monotonic() + 15  # the CLI revokes at once; a serving broker's job within seconds
        while upstream_revocation_results(federation.database) != ["revoked"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert upstream_revocation_results(federation.database) == ["revoked"]
        assert stored_upstream_token(federation.database, me["sub"]) is None
        # RFC 7009 at oidc-provider ended the grant behind the refresh token: nothing is left to revoke there.
        assert federation.idp.revoke_grants(ALICE.sub) == 0
    finally:
        broker_cli("users", "restore", ALICE.email, "--reason", "e2e cleanup", config_path=config_path)
