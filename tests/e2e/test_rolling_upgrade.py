"""A rolling upgrade, with this release as the one already running: the next release's additive migration
is applied under a running ``broker serve``, which keeps answering throughout and after; the contracting
migration that follows takes it out of rotation with advice that works, never ``broker db upgrade``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.storage.db import Database
from broker.storage.schema import HEAD
from tests.support.http_flow import sign_in
from tests.support.migration_chain import CONTRACT, EXPAND, migrate, next_release
from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess, registered_app, serve_config

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'broker.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    yield server.create_database("rolling")
    server.drop_database("rolling")


class Traffic:
    """Refreshes (each rotates the family) and readiness probes against one broker, on a thread."""

    def __init__(self, base: str, client_id: str, resource: str, refresh_token: str):
        self.base, self.client_id, self.resource, self.token = base, client_id, resource, refresh_token
        self.answers: list[tuple[float, str, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as http:
            while not self.stop.is_set():
                response = http.post("/token", data={"grant_type": "refresh_token", "refresh_token": self.token,
                                                     "client_id": self.client_id, "resource": self.resource})
                self.answers.append((time.monotonic(), "refresh", response.status_code))
                if response.status_code == 200:
                    self.token = response.json()["refresh_token"]
                self.answers.append((time.monotonic(), "readyz", http.get("/readyz").status_code))

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_the_running_release_serves_through_an_expand_and_steps_aside_at_a_contract(
        tmp_path: Path, database_url: str) -> None:
    port = free_port()
    issuer, resource = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/mcp"
    env = {"BROKER_CONFIG": str(serve_config(tmp_path / "broker.toml", issuer, database_url))}
    app = registered_app(env, resource, tmp_path)
    chain, database = next_release(tmp_path, sleep=2.0), Database(database_url)
    server = ServerProcess([*BROKER, "serve", "--port", "{port}"], env=env, log_path=tmp_path / "serve.log",
                           port=port, cwd=tmp_path)
    try:
        with server:
            tokens = sign_in(issuer, app, resource, "alice", "alice-pw")
            with Traffic(issuer, app, resource, tokens["refresh_token"]) as traffic:
                time.sleep(0.5)
                started = time.monotonic()
                migrate(chain, database, EXPAND)  # the next release's `broker db upgrade`, under this one
                ended = time.monotonic()
                time.sleep(0.5)
            during = [a for a in traffic.answers if started <= a[0] <= ended]
            assert len([a for a in during if a[1] == "refresh"]) >= 3, traffic.answers
            assert {status for _, _, status in traffic.answers} == {200}
            assert sign_in(issuer, app, resource, "alice", "alice-pw")["access_token"]
            # `broker db status` and `db upgrade` on such schemas, both stores: tests/unit/test_cli_db.py
            migrate(chain, database, CONTRACT)  # once every instance runs the next release
            probe = httpx.get(f"{issuer}/readyz")
            assert probe.status_code == 503 and probe.json()["checks"]["schema"] == "failed"
        advice = (f"the database schema is at revision {CONTRACT}, newer than this broker ({HEAD}), and supports "
                  f"releases from revision {EXPAND} on: run a release that knows revision {CONTRACT}")
        log = server.output()
        assert f"not ready: schema check failed: {advice}" in log and "broker db upgrade" not in log
    finally:
        database.dispose()
