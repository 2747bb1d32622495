"""Shared fixtures.

Tests that take ``database_url`` (directly or through ``state``/``client``) run once per store:
SQLite in a temp dir, and a real PostgreSQL server that this suite starts itself
(``tests/support/postgres.py``) the first time a PostgreSQL test needs it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from broker import config
from broker.config import Settings
from broker.storage.db import Database
from broker.storage.migrate import upgrade

ISSUER = "http://127.0.0.1:8000"
# TEST_STORES=sqlite (`make test-quick`) runs the store-parametrised tests on SQLite only.
STORES = [s for s in os.environ.get("TEST_STORES", "sqlite,postgresql").split(",") if s]

TEST_USERS = [
    {"username": "alice", "password": "alice-pw", "email": "alice@example.com", "name": "Alice Anders",
     "groups": ["engineering"]},
    {"username": "bob", "password": "bob-pw", "email": "bob@example.com", "name": "Bob Brown", "groups": ["sales"]},
    {"username": "carol", "password": "carol-pw", "email": "carol@example.com", "name": "Carol Chen",
     "groups": ["it-admins", "security"]},
]
TESTIDP_CLIENT = {"client_id": "mcp-auth-broker", "client_secret": "testidp-client-secret",
                  "redirect_uris": [f"{ISSUER}/callback/test"]}


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``broker.logs.configure`` replaces the root handlers; give each test the ones it started with."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    if "postgresql" not in STORES:
        pytest.skip("PostgreSQL is not among TEST_STORES")
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=STORES)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """An empty database on each store."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'broker.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


def base_settings(**sections: Any) -> dict[str, Any]:
    """The settings every test starts from: dev mode, a fresh KEK, the test IdP with three users."""
    raw: dict[str, Any] = {
        "mode": "dev",
        "issuer": ISSUER,
        "keys": {"key_encryption_key": config.new_kek()},
        "logging": {"format": "text"},
        "registration": {"enabled": True},
        "testidp": {"enabled": True, "users": TEST_USERS, "clients": [TESTIDP_CLIENT]},
        "idps": [{"id": "test", "type": "test", "issuer": f"{ISSUER}/testidp",
                  "client_id": TESTIDP_CLIENT["client_id"], "client_secret": TESTIDP_CLIENT["client_secret"]}],
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return raw


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    def make(**sections: Any) -> Settings:
        raw = base_settings(**sections)
        raw.setdefault("database", {})["url"] = database_url
        return config.load(None, env={}, defaults=raw)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def migrated(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def loopback() -> Any:
    from tests.support.loopback import LoopbackTransport

    return LoopbackTransport()


@pytest.fixture
def state(settings: Settings, migrated: Database, loopback: Any) -> Iterator[Any]:
    """The broker's services, with the demo MCP server registered; outgoing HTTP loops back into the app."""
    from broker import dev
    from broker.app import build_state, prepare

    broker_state = build_state(settings, http=httpx.AsyncClient(transport=loopback))
    prepare(broker_state)
    with broker_state.database.transaction() as session:
        dev.seed(session, settings.issuer)
        dev.seed_policy(session)
    yield broker_state
    if broker_state.metrics is not None:
        broker_state.metrics.close()  # stop observing audit events for a test that is over
    broker_state.database.dispose()


@pytest.fixture
def app(state: Any, loopback: Any) -> Any:
    from broker.web import create_app

    application = create_app(state)
    loopback.app = application
    return application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield http


@pytest.fixture
def cli(state: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """``broker.cli.main`` acting on the same database and settings as ``state``."""
    from broker.cli import main

    monkeypatch.setenv("BROKER_MODE", "dev")
    monkeypatch.setenv("BROKER_ISSUER", state.settings.issuer)
    monkeypatch.setenv("BROKER_DATABASE__URL", state.settings.database_url)
    monkeypatch.setenv("BROKER_KEYS__KEY_ENCRYPTION_KEY", state.settings.keys.key_encryption_key.get_secret_value())
    return main
