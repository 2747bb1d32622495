"""Two broker processes on one PostgreSQL: a revocation through one holds on the other at once.

A refresh loop runs against instance B while the user is revoked through instance A's admin API;
no refresh that starts after the revoke call returned may succeed, and B's introspection says
inactive. (docs/architecture.md, "State": all state is in the database; any instance serves any request.)
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support.oauth_flow import _ACTION, hidden_fields, pkce
from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess, everyone_may_reach, run_broker, serve_config

pytestmark = pytest.mark.e2e
REDIRECT = "http://127.0.0.1:9/cb"


def sign_in(base: str, client_id: str) -> dict:
    """Authorization code flow over real HTTP (trusted client: no consent page)."""
    verifier, challenge = pkce()
    with httpx.Client(base_url=base, timeout=10) as browser:
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "s",
                  "code_challenge": challenge, "code_challenge_method": "S256", "resource": f"{base}/mcp"}
        response = browser.get("/authorize?" + urlencode(params))
        form_page = browser.get(response.headers["location"])
        fields = {**hidden_fields(form_page.text), "username": "alice", "password": "alice-pw"}
        response = browser.post(_ACTION.search(form_page.text).group(1), data=fields)
        response = browser.get(response.headers["location"])
        code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
        tokens = browser.post("/token", data={"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                              "redirect_uri": REDIRECT, "code_verifier": verifier,
                                              "resource": f"{base}/mcp"})
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


def test_revoke_through_one_instance_holds_on_the_other(tmp_path: Path, postgres_server) -> None:
    url = postgres_server.create_database("two_instances")
    port_a, port_b = free_port(), free_port()
    issuer = f"http://127.0.0.1:{port_a}"
    cfg = tmp_path / "broker.toml"
    serve_config(cfg, issuer, url)
    env = {"BROKER_CONFIG": str(cfg)}
    assert run_broker("db", "upgrade", env=env).returncode == 0
    assert run_broker("servers", "add", "--id", "mcp", "--name", "MCP", "--resource", f"{issuer}/mcp", "--scopes",
                      "read", env=env).returncode == 0
    assert run_broker("policy", "import", str(everyone_may_reach("mcp", tmp_path)), env=env).returncode == 0
    app = json.loads(run_broker("clients", "add", "--name", "app", "--redirect-uri", REDIRECT, "--trusted", "--json",
                                env=env).stdout)
    rs = json.loads(run_broker("clients", "add", "--name", "rs", "--confidential", "--introspect",
                               "--resource-server", "mcp", "--json", env=env).stdout)
    soar = json.loads(run_broker("clients", "add", "--name", "soar", "--confidential", "--client-credentials",
                                 "--scope", "security:revoke", "--json", env=env).stdout)
    a = ServerProcess([*BROKER, "serve", "--port", str(port_a)], env=env, log_path=tmp_path / "a.log", port=port_a)
    b = ServerProcess([*BROKER, "serve", "--port", str(port_b)], env=env, log_path=tmp_path / "b.log", port=port_b)
    with a, b:
        tokens = sign_in(a.base_url, app["client_id"])
        admin = httpx.post(f"{a.base_url}/token", data={"grant_type": "client_credentials",
                                                        "resource": f"{issuer}/admin/api"},
                           auth=(soar["client_id"], soar["client_secret"])).json()["access_token"]
        outcomes: list[tuple[float, int]] = []
        stop = threading.Event()

        def refresh_loop() -> None:
            current = tokens["refresh_token"]
            with httpx.Client(base_url=b.base_url, timeout=10) as http:
                while not stop.is_set():
                    started = time.monotonic()
                    response = http.post("/token", data={"grant_type": "refresh_token", "refresh_token": current,
                                                         "client_id": app["client_id"]})
                    outcomes.append((started, response.status_code))
                    if response.status_code == 200:
                        current = response.json()["refresh_token"]

        loop = threading.Thread(target=refresh_loop)
        loop.start()
        time.sleep(1.0)
        revoke = httpx.post(f"{a.base_url}/admin/api/v1/users/alice@example.com/revoke", json={"reason": "e2e"},
                            headers={"authorization": f"Bearer {admin}"}, timeout=10)
        returned = time.monotonic()
        assert revoke.status_code == 200, revoke.text
        time.sleep(1.0)
        stop.set()
        loop.join(timeout=20)
        introspection = httpx.post(f"{b.base_url}/introspect", data={"token": tokens["access_token"]},
                                   auth=(rs["client_id"], rs["client_secret"])).json()
    before = [s for t, s in outcomes if t < returned]
    after = [s for t, s in outcomes if t >= returned]
    assert before.count(200) >= 3 and after and 200 not in after, (len(before), after[:5])
    assert introspection == {"active": False}
    postgres_server.drop_database("two_instances")
