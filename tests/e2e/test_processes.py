"""`broker dev` and `broker serve` as real processes, the way an operator starts them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from broker import config
from tests.support.processes import BROKER, ServerProcess, run_broker

pytestmark = pytest.mark.e2e


def test_broker_dev_starts_from_nothing_and_serves(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    server = ServerProcess([*BROKER, "dev", "--port", "{port}", "--data-dir", str(data_dir)], env={},
                           log_path=tmp_path / "dev.log", cwd=tmp_path)
    with server:
        issuer = server.base_url
        assert httpx.get(f"{issuer}/testidp/.well-known/openid-configuration").json()["issuer"] == f"{issuer}/testidp"
        assert httpx.get(f"{issuer}/jwks").json()["keys"]
    output = server.output()
    assert f"issuer           {issuer}" in output and "password: demo" in output
    assert (data_dir / "broker.db").exists()
    assert (data_dir / "dev-key-encryption-key").stat().st_mode & 0o777 == 0o600


def test_broker_serve_with_two_workers_on_postgresql(tmp_path: Path, postgres_server) -> None:
    url = postgres_server.create_database("serve_e2e")
    port_holder = ServerProcess([], {}, tmp_path / "unused.log")  # just to reserve a port number
    env = {"BROKER_ISSUER": f"http://127.0.0.1:{port_holder.port}", "BROKER_DATABASE__URL": url,
           "BROKER_KEYS__KEY_ENCRYPTION_KEY": config.new_kek()}
    refused = run_broker("serve", "--port", str(port_holder.port), env=env)
    assert refused.returncode == 2
    assert refused.stderr == "broker: the database has no schema yet: run `broker db upgrade`\n"
    assert run_broker("db", "upgrade", env=env).returncode == 0
    server = ServerProcess([*BROKER, "serve", "--workers", "2", "--port", "{port}"], env=env,
                           log_path=tmp_path / "serve.log", port=port_holder.port)
    with server:
        kids = {httpx.get(f"{server.base_url}/jwks").json()["keys"][0]["kid"] for _ in range(20)}
        assert len(kids) == 1  # one key, created once before the workers started
        assert httpx.get(f"{server.base_url}/testidp/jwks").status_code == 404  # production: no test IdP
    lines = [line for line in server.output().splitlines() if line.startswith("{")]
    assert any('"logger": "broker.access"' in line and '"request_id"' in line for line in lines)
    postgres_server.drop_database("serve_e2e")
