"""A real `broker serve` federated to Okta- and Entra-shaped IdPs served for real on loopback.

The fakes (tests/support/fake_idps.py) run under uvicorn in this process; the broker is a child
process configured by a TOML file written here (production mode, SQLite, both IdPs with
``email_domains``). The test drives the OAuth flow over real HTTP as the browser and the MCP client
would, then reads the broker's SQLite database for the groups each login stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import jwt
import pytest

from broker import config
from tests.support.broker_config import write
from tests.support.fake_idps import FakeClient, FakeEntra, FakeOkta, FakeUser, loopback_url, serve
from tests.support.oauth_flow import hidden_fields, pkce
from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess, everyone_may_reach, run_broker

pytestmark = pytest.mark.e2e

CLIENT_REDIRECT = "http://127.0.0.1:9/cb"
TENANT = "6a1b2c3d-0000-4000-8000-00000000e1e1"
ENGINEERING, SUPPORT = "e0000000-0000-4000-8000-000000000001", "e0000000-0000-4000-8000-000000000002"
MANY = [ENGINEERING, *(f"e0000000-0000-4000-8000-{i:012d}" for i in range(3, 260))]  # > 200: overage
BOB, OLGA = "0b0b0b0b-0000-4000-8000-000000000001", "0b0b0b0b-0000-4000-8000-000000000002"


@dataclass
class World:
    broker: ServerProcess
    okta: FakeOkta
    entra: FakeEntra
    client_id: str
    resource: str
    database: Path


def upstreams(issuer: str) -> tuple[FakeOkta, FakeEntra]:
    okta = FakeOkta(loopback_url(), [
        FakeUser("alice@okta.example", "00u1alice", "alice@okta.example", "Alice Okta", ["engineering", "everyone"]),
        FakeUser("una@okta.example", "00u2una", "una@okta.example", "Una Unassigned", assigned=False)],
        [FakeClient("okta-client", "okta-e2e-secret", [f"{issuer}/callback/okta"])])
    entra = FakeEntra(loopback_url(), [
        FakeUser("bob@entra.example", BOB, "bob@entra.example", "Bob Entra", [ENGINEERING, SUPPORT], tenant=TENANT),
        FakeUser("olga@entra.example", OLGA, "olga@entra.example", "Olga Overage", MANY, tenant=TENANT,
                 overage=True)],
        [FakeClient("entra-client", "entra-e2e-secret", [f"{issuer}/callback/entra"])])
    entra.graph_page_size = 100  # Graph answers in pages: the broker follows @odata.nextLink
    return okta, entra


def broker_config(issuer: str, data_dir: Path, okta: FakeOkta, entra: FakeEntra) -> dict:
    return {"mode": "production", "issuer": issuer, "data_dir": str(data_dir),
            "keys": {"key_encryption_key": config.new_kek()}, "registration": {"enabled": True},
            "logging": {"format": "json"},
            "idps": [{"id": "okta", "type": "okta", "display_name": "Okta", "issuer": okta.issuer,
                      "client_id": "okta-client", "client_secret": "okta-e2e-secret",
                      "scopes": ["openid", "email", "profile", "groups"], "email_domains": ["okta.example"]},
                     {"id": "entra", "type": "entra", "display_name": "Entra ID", "issuer": entra.issuer(TENANT),
                      "client_id": "entra-client", "client_secret": "entra-e2e-secret",
                      "email_domains": ["entra.example"],
                      "entra": {"group_names": {ENGINEERING: "engineering"}, "graph_endpoint": entra.graph_endpoint}}]}


def cli(env: dict[str, str], *args: str) -> str:
    done = run_broker(*args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("okta_entra")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    okta, entra = upstreams(issuer)
    fakes = [serve(okta), serve(entra)]
    config_path = base / "broker.toml"
    write(config_path, broker_config(issuer, base / "var", okta, entra))
    env = {"BROKER_CONFIG": str(config_path)}
    resource = f"http://127.0.0.1:{free_port()}/mcp"
    try:
        cli(env, "db", "upgrade")
        cli(env, "servers", "add", "--id", "demo", "--name", "Demo", "--resource", resource,
            "--scopes", "tools:read tools:call")
        cli(env, "policy", "import", str(everyone_may_reach("demo", base)))
        client = json.loads(cli(env, "clients", "add", "--name", "t", "--redirect-uri", CLIENT_REDIRECT, "--json"))
        broker = ServerProcess([*BROKER, "serve", "--port", "{port}"], env=env, log_path=base / "serve.log",
                               port=port)
        with broker:
            yield World(broker, okta, entra, client["client_id"], resource, base / "var" / "broker.db")
    finally:
        for fake in fakes:
            fake.stop()


def authorize_url(world: World, challenge: str, login_hint: str) -> str:
    params = {"response_type": "code", "client_id": world.client_id, "redirect_uri": CLIENT_REDIRECT,
              "code_challenge": challenge, "code_challenge_method": "S256", "resource": world.resource,
              "scope": "tools:read tools:call", "state": "e2e-state", "login_hint": login_hint}
    return f"{world.broker.base_url}/authorize?{urlencode(params)}"


def browse(world: World, url: str) -> dict[str, str]:
    """Follow redirects by hand (broker, IdP, callback, consent) until the redirect to the client."""
    with httpx.Client(timeout=15) as browser:
        for _ in range(8):
            response = browser.get(url)
            if response.status_code == 200 and 'action="/consent"' in response.text:
                response = browser.post(f"{world.broker.base_url}/consent",
                                        data={**hidden_fields(response.text), "decision": "approve"})
            assert response.status_code in (302, 303), (response.status_code, response.text[:500])
            url = str(httpx.URL(url).join(response.headers["location"]))
            if url.startswith(CLIENT_REDIRECT):
                return dict(httpx.URL(url).params)
    raise AssertionError("the flow did not reach the client")


def sign_in(world: World, login_hint: str) -> dict[str, object]:
    verifier, challenge = pkce()
    redirect = browse(world, authorize_url(world, challenge, login_hint))
    assert redirect["state"] == "e2e-state" and redirect["iss"] == world.broker.base_url, redirect
    assert "code" in redirect, redirect
    response = httpx.post(f"{world.broker.base_url}/token", data={
        "grant_type": "authorization_code", "code": redirect["code"], "redirect_uri": CLIENT_REDIRECT,
        "client_id": world.client_id, "code_verifier": verifier, "resource": world.resource})
    assert response.status_code == 200, response.text
    return response.json()


def access_token_claims(world: World, token: str) -> dict[str, object]:
    keys = jwt.PyJWKClient(f"{world.broker.base_url}/jwks")
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"  # RFC 9068
    return jwt.decode(token, keys.get_signing_key_from_jwt(token).key, algorithms=["ES256", "RS256"],
                      audience=world.resource, issuer=world.broker.base_url)


def stored_groups(world: World, idp_id: str, subject: str) -> list[str]:
    with sqlite3.connect(world.database) as db:
        rows = db.execute(
            "SELECT g.name FROM group_memberships m JOIN groups g ON g.id = m.group_id "
            "JOIN upstream_identities u ON u.user_id = m.user_id "
            "WHERE u.idp_id = ? AND u.subject = ? AND g.source = ? ORDER BY g.name",
            (idp_id, subject, f"idp:{idp_id}")).fetchall()
    return [name for (name,) in rows]


def test_okta_user_gets_a_token_for_the_mcp_server_and_okta_groups(world: World) -> None:
    tokens = sign_in(world, "alice@okta.example")
    claims = access_token_claims(world, str(tokens["access_token"]))
    assert claims["aud"] == world.resource and set(str(claims["scope"]).split()) == {"tools:read", "tools:call"}
    assert stored_groups(world, "okta", "00u1alice") == ["engineering", "everyone"]
    assert "POST /oauth2/default/v1/token" in world.okta.requests
    assert "resource" not in world.okta.token_requests[-1]  # the client's resource never goes upstream


def test_entra_user_groups_are_mapped_names_and_passed_through_ids(world: World) -> None:
    tokens = sign_in(world, "bob@entra.example")
    assert access_token_claims(world, str(tokens["access_token"]))["aud"] == world.resource
    assert stored_groups(world, "entra", BOB) == sorted([SUPPORT, "engineering"])


def test_entra_group_overage_groups_come_from_graph(world: World) -> None:
    sign_in(world, "olga@entra.example")
    groups = stored_groups(world, "entra", OLGA)
    assert len(groups) == len(MANY) and "engineering" in groups and ENGINEERING not in groups
    graph = [r for r in world.entra.requests if r.endswith(f"/users/{OLGA}/getMemberObjects")]
    assert graph == [f"POST /graph/v1.0/users/{OLGA}/getMemberObjects"] + [
        f"GET /graph/v1.0/users/{OLGA}/getMemberObjects"] * 2
    assert f"POST /{TENANT}/oauth2/v2.0/token" in world.entra.requests


def test_okta_unassigned_user_is_sent_back_with_access_denied(world: World) -> None:
    verifier, challenge = pkce()
    redirect = browse(world, authorize_url(world, challenge, "una@okta.example"))
    assert (redirect["error"], redirect["iss"], redirect["state"]) == (
        "access_denied", world.broker.base_url, "e2e-state")
    assert stored_groups(world, "okta", "00u2una") == []
    with sqlite3.connect(world.database) as db:
        assert db.execute("SELECT count(*) FROM upstream_identities WHERE subject = '00u2una'").fetchone() == (0,)


def test_no_upstream_secret_or_token_reaches_the_broker_log(world: World) -> None:
    output = world.broker.output()
    assert "upstream login verified" in output
    for secret in ("okta-e2e-secret", "entra-e2e-secret", *world.entra.app_tokens):
        assert secret not in output
