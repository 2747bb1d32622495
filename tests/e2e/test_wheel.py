"""The wheel as an operator installs it: built from this checkout, installed into a fresh venv and run
from an empty directory outside the checkout. ``broker db upgrade`` then ``broker serve`` on SQLite and on
PostgreSQL, ``broker dev`` with its demo MCP server and test IdP, a full sign-in and a token on each."""

from __future__ import annotations

import json
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support.http_flow import REDIRECT, register_public_client, sign_in
from tests.support.postgres import free_port
from tests.support.processes import ServerProcess, everyone_may_reach, serve_config
from tests.support.wheel import ROOT, WHEELHOUSE, Installed, built_and_installed

pytestmark = pytest.mark.e2e
MCP_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "wheel-test", "version": "1"}}}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    yield built_and_installed(tmp_path_factory.mktemp("wheel"))
    for stale in WHEELHOUSE.glob("mcp_auth_broker-*.whl"):
        stale.unlink()  # the wheelhouse keeps dependencies only


def test_the_venv_runs_the_wheels_code_not_the_checkouts(installed: Installed) -> None:
    purelib = Path(installed.python("import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    found = installed.python("import broker, broker.bundled as b; print(broker.__file__); print(b.TEMPLATES)")
    module, templates = (Path(line) for line in found.splitlines())
    assert module.is_relative_to(purelib) and templates.is_relative_to(purelib)
    assert not templates.is_symlink() and (templates / "static" / "broker.css").is_file()
    for shipped in ("templates", "migrations"):  # every page and every migration, whatever its name (package-data)
        installed_files = {p.relative_to(templates.parent) for p in (templates.parent / shipped).rglob("*")
                           if p.is_file() and "__pycache__" not in p.parts}
        checkout_files = {p.relative_to(ROOT) for p in (ROOT / shipped).rglob("*")
                          if p.is_file() and "__pycache__" not in p.parts and p.name != "alembic.ini"}
        assert installed_files == checkout_files, installed_files ^ checkout_files
    assert not Path(sysconfig.get_paths()["purelib"]).is_relative_to(installed.venv)  # this suite runs elsewhere
    version = installed.run("--version")
    assert version.returncode == 0 and version.stdout.startswith("mcp-auth-broker ")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: SQLite at its default place (``./var/broker.db`` in the working directory); else a URL."""
    if request.param == "sqlite":
        yield None
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database("wheel_smoke")
    yield url
    server.drop_database("wheel_smoke")


def test_db_upgrade_then_serve_then_sign_in(installed: Installed, store: str | None, tmp_path: Path) -> None:
    home = tmp_path / "operator"
    home.mkdir()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    serve_config(home / "broker.toml", issuer, store)
    env = {"BROKER_CONFIG": str(home / "broker.toml")}

    upgraded = installed.run("db", "upgrade", cwd=home, **env)
    assert upgraded.returncode == 0 and upgraded.stdout.startswith("schema at "), upgraded.stderr
    assert installed.run("db", "status", cwd=home, **env).returncode == 0
    resource = f"{issuer}/mcp"
    for command in (("servers", "add", "--id", "mcp", "--name", "MCP", "--resource", resource, "--scopes", "read"),
                    ("policy", "import", str(everyone_may_reach("mcp", home)))):
        done = installed.run(*command, cwd=home, **env)
        assert done.returncode == 0, done.stderr
    added = installed.run("clients", "add", "--name", "app", "--redirect-uri", REDIRECT, "--json", cwd=home, **env)
    client_id = json.loads(added.stdout)["client_id"]

    server = ServerProcess([installed.broker, "serve", "--port", "{port}"], env=installed.env(**env),
                           log_path=tmp_path / "serve.log", port=port, cwd=home)
    with server:
        assert httpx.get(f"{issuer}/static/broker.css").headers["content-type"].startswith("text/css")
        tokens = sign_in(issuer, client_id, resource, "alice", "alice-pw")  # the IdP's form and the consent page
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["aud"] == resource and claims["scope"] == "read"
    assert "Traceback" not in server.output()
    if store is None:
        assert (home / "var" / "broker.db").is_file()


def test_broker_dev_serves_the_demo_mcp_server_and_the_test_idp(installed: Installed, tmp_path: Path) -> None:
    home = tmp_path / "newcomer"
    home.mkdir()
    server = ServerProcess([installed.broker, "dev", "--port", "{port}"], env=installed.env(),
                           log_path=tmp_path / "dev.log", cwd=home)
    with server:
        issuer = server.base_url
        assert httpx.get(f"{issuer}/testidp/.well-known/openid-configuration").json()["issuer"] == f"{issuer}/testidp"
        resource = f"{issuer}/demo/mcp"
        metadata = httpx.get(f"{issuer}/.well-known/oauth-protected-resource/demo/mcp")
        assert metadata.status_code == 200 and metadata.json()["resource"] == resource
        assert httpx.post(resource, json=INITIALIZE, headers=MCP_ACCEPT).status_code == 401
        tokens = sign_in(issuer, register_public_client(issuer), resource, "alice", "demo")
        answer = httpx.post(resource, json=INITIALIZE, headers={**MCP_ACCEPT,
                                                                "authorization": f"Bearer {tokens['access_token']}"})
        assert answer.status_code == 200, answer.text
    assert "not served" not in server.output() and "Traceback" not in server.output()
    assert (home / "var" / "broker.db").is_file()
