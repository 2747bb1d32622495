"""examples/production.toml, copied and given its secrets, starts `broker serve` with nothing unasked for."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from broker import config
from tests.support.processes import BROKER, ServerProcess, run_broker

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "production.toml"


def test_minimal_production_config_serves_once_its_secrets_are_filled_in(tmp_path: Path, postgres_server) -> None:
    path = tmp_path / "broker.toml"
    shutil.copy(EXAMPLE, path)
    env = {"BROKER_KEYS__KEY_ENCRYPTION_KEY": config.new_kek(),
           "BROKER_DATABASE__URL": postgres_server.create_database("production_example"),
           "BROKER_IDPS__0__CLIENT_SECRET": "a-real-client-secret-0123456789"}
    upgraded = run_broker("db", "upgrade", "--config", str(path), env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    server = ServerProcess([*BROKER, "serve", "--config", str(path), "--port", "{port}"], env=env,
                           log_path=tmp_path / "serve.log", cwd=tmp_path)
    with server:
        base = server.base_url
        metadata = httpx.get(f"{base}/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == "https://mcp-auth.example.com"
        assert "registration_endpoint" not in metadata  # dynamic registration is off
        assert not any("jwt-bearer" in g or "token-exchange" in g for g in metadata["grant_types_supported"])
        assert httpx.get(f"{base}/testidp/.well-known/openid-configuration").status_code == 404
        assert httpx.get(f"{base}/scim/v2/Users").status_code == 404
        assert httpx.get(f"{base}/metrics").status_code == 404
        assert httpx.post(f"{base}/ssf/events", content=b"x").status_code == 404
    postgres_server.drop_database("production_example")
