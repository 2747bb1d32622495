"""The PostgreSQL roles of docs/operations.md, run as written there: the owner migrates, the serving role
serves a sign-in and a token and verifies the audit chain, and may neither change the schema nor delete
the audit log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from broker import bundled
from broker.storage import migrate
from broker.storage.db import Database
from broker.storage.migrate import MigrationError
from tests.support.http_flow import sign_in
from tests.support.migration_chain import next_release
from tests.support.postgres import HOST, free_port
from tests.support.processes import BROKER, ServerProcess, registered_app, run_broker, serve_config

pytestmark = pytest.mark.e2e
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented_sql() -> list[str]:
    """The ```sql blocks of the "Database roles" section, in order: cluster, database, after the upgrade."""
    section = DOCS.read_text().split("## Database roles (PostgreSQL)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


def run_sql(conninfo: str, script: str) -> None:
    """Each statement of ``script`` (comments dropped), one at a time: CREATE DATABASE runs outside a transaction."""
    plain = re.sub(r"--[^\n]*", "", script)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in filter(None, (s.strip() for s in plain.split(";"))):
            conn.execute(statement)


@pytest.fixture
def roles(postgres_server) -> Iterator[dict[str, str]]:
    """The roles and database of the docs; the URL and libpq string of each role."""
    cluster, database, after_upgrade = documented_sql()
    run_sql(postgres_server.conninfo(), cluster)
    port = postgres_server.port
    urls = {role: f"postgresql+psycopg://{role}@{HOST}:{port}/broker" for role in ("broker_owner", "broker_app")}
    info = {role: make_conninfo(host=HOST, port=port, user=role, dbname="broker") for role in urls}
    run_sql(info["broker_owner"], database)
    try:
        yield {**urls, "after_upgrade": after_upgrade, **{f"{r}_conninfo": v for r, v in info.items()}}
    finally:
        run_sql(postgres_server.conninfo(), "DROP DATABASE IF EXISTS broker WITH (FORCE);\n"
                                            "DROP ROLE IF EXISTS broker_app;\nDROP ROLE IF EXISTS broker_owner;\n")


def test_the_owner_migrates_and_the_serving_role_serves_with_least_privilege(roles, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    issuer, resource = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/mcp"
    config = serve_config(tmp_path / "broker.toml", issuer, roles["broker_app"])
    owner, app = {"BROKER_CONFIG": str(config), "BROKER_DATABASE__URL": roles["broker_owner"]}, \
        {"BROKER_CONFIG": str(config)}
    assert run_broker("db", "upgrade", env=owner).returncode == 0
    run_sql(roles["broker_owner_conninfo"], roles["after_upgrade"])
    client_id = registered_app(app, resource, tmp_path)  # its `broker db upgrade` changes nothing
    with ServerProcess([*BROKER, "serve", "--port", "{port}"], env=app, log_path=tmp_path / "serve.log",
                       port=port, cwd=tmp_path):
        assert sign_in(issuer, client_id, resource, "alice", "alice-pw")["access_token"]
    verified = run_broker("audit", "verify", env=app)
    assert verified.returncode == 0 and verified.stdout.startswith("audit chain intact"), verified.stderr
    with psycopg.connect(roles["broker_app_conninfo"], autocommit=True) as conn:
        for statement in ("CREATE TABLE intruder (id int)", "DROP TABLE users", "ALTER TABLE users ADD x int",
                          "DELETE FROM audit_events", "TRUNCATE audit_events", "DELETE FROM audit_chain_head"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    monkeypatch.setattr(bundled, "MIGRATIONS", next_release(tmp_path))  # the next release, run as the wrong role
    database = Database(roles["broker_app"])
    try:
        with pytest.raises(MigrationError, match="permission denied"):
            migrate.upgrade(database)
    finally:
        database.dispose()
