"""The restore drill of docs/operations.md on both stores: a backup taken while ``broker serve`` rotates
refresh tokens, restored into a new database, passes ``broker db status`` and ``broker audit verify``,
serves again with the same key-encryption key, and redeems a refresh token issued before the backup."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support.http_flow import sign_in
from tests.support.postgres import find_bin_dir, free_port
from tests.support.processes import BROKER, ServerProcess, registered_app, run_broker, serve_config

pytestmark = pytest.mark.e2e


class Store:
    """Where the broker's database is, and how the drill backs it up and restores it."""

    def __init__(self, kind: str, tmp_path: Path, postgres: object | None):
        self.kind, self.tmp_path, self.postgres = kind, tmp_path, postgres
        self.url = f"sqlite:///{tmp_path / 'broker.db'}" if kind == "sqlite" else postgres.create_database("drill")

    def back_up(self) -> Path:
        target = self.tmp_path / ("backup.db" if self.kind == "sqlite" else "backup.dump")
        if self.kind == "sqlite":  # SQLite's online backup, as `sqlite3 broker.db ".backup ..."` runs it
            with sqlite3.connect(self.tmp_path / "broker.db") as source, sqlite3.connect(target) as copy:
                source.backup(copy)
        else:
            subprocess.run([str(find_bin_dir() / "pg_dump"), "--format=custom", f"--file={target}",
                            self.postgres.conninfo("drill")], check=True, capture_output=True, timeout=120)
        return target

    def restore(self, backup: Path) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{backup}"
        url = self.postgres.create_database("restored")
        restoring = [str(find_bin_dir() / "pg_restore"), "--no-owner", f"--dbname={self.postgres.conninfo('restored')}"]
        subprocess.run([*restoring, str(backup)], check=True, capture_output=True, timeout=120)
        return url

    def drop(self) -> None:
        if self.kind == "postgresql":
            self.postgres.drop_database("drill")
            self.postgres.drop_database("restored")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    postgres = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    chosen = Store(request.param, tmp_path, postgres)
    yield chosen
    chosen.drop()


def refresh(issuer: str, client_id: str, resource: str, token: str) -> httpx.Response:
    return httpx.post(f"{issuer}/token", timeout=10, data={"grant_type": "refresh_token", "client_id": client_id,
                                                           "refresh_token": token, "resource": resource})


def test_a_backup_taken_while_serving_restores_verifies_and_serves(store: Store, tmp_path: Path) -> None:
    port = free_port()
    issuer, resource = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/mcp"
    config = serve_config(tmp_path / "broker.toml", issuer, store.url)
    env = {"BROKER_CONFIG": str(config)}
    client_id = registered_app(env, resource, tmp_path)
    serving = ServerProcess([*BROKER, "serve", "--port", "{port}"], env=env, log_path=tmp_path / "serve.log",
                            port=port, cwd=tmp_path)
    with serving:
        kept = sign_in(issuer, client_id, resource, "alice", "alice-pw")  # not used again until the restore
        busy = sign_in(issuer, client_id, resource, "alice", "alice-pw")["refresh_token"]
        stop, answers = threading.Event(), []

        def rotate() -> None:
            nonlocal busy
            while not stop.is_set():
                response = refresh(issuer, client_id, resource, busy)
                answers.append(response.status_code)
                busy = response.json().get("refresh_token", busy)

        rotating = threading.Thread(target=rotate)
        rotating.start()
        try:
            backup = store.back_up()
        finally:
            stop.set()
            rotating.join(30)
        assert answers and set(answers) == {200}

    restored = {**env, "BROKER_DATABASE__URL": store.restore(backup)}
    status = run_broker("db", "status", env=restored)
    assert status.returncode == 0 and "state:    current" in status.stdout, status.stdout + status.stderr
    verified = run_broker("audit", "verify", "--no-seal", env=restored)
    assert verified.returncode == 0 and verified.stdout.startswith("audit chain intact: "), verified.stderr
    with ServerProcess([*BROKER, "serve", "--port", "{port}"], env=restored, log_path=tmp_path / "restored.log",
                       port=port, cwd=tmp_path) as again:
        redeemed = refresh(issuer, client_id, resource, kept["refresh_token"])
        assert redeemed.status_code == 200, redeemed.text
        keys = {k["kid"]: k for k in httpx.get(f"{again.base_url}/jwks").json()["keys"]}
        token = redeemed.json()["access_token"]
        assert jwt.decode(token, jwt.PyJWK(keys[jwt.get_unverified_header(token)["kid"]]).key, algorithms=["ES256"],
                          audience=resource)["sub"]
    resealed = run_broker("audit", "verify", env=restored)
    assert resealed.returncode == 0 and "audit chain intact" in resealed.stdout, resealed.stderr
