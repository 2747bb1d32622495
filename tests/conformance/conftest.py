"""The storage conformance suite: every repository function of ``broker.storage``, its contract, on each store.

Each test takes ``database`` (migrated, on SQLite and on PostgreSQL) and works through the repository
functions alone, in transactions it commits as the broker's requests and commands do. A function's
contract is what it returns (one declared type per entity), what it changes, and what it leaves alone.

One database per store is migrated once for the whole suite and emptied before each test: migrating
per test cost 0.7-1 s of setup each, emptying costs milliseconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from broker.storage.db import Database
from broker.storage.migrate import upgrade
from broker.storage.models import Base
from tests.conftest import STORES


@pytest.fixture(scope="session", params=STORES)
def migrated_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('conformance')) / 'broker.db'}"
        name = None
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"conformance_{uuid.uuid4().hex[:12]}"
        url = server.create_database(name)
    database = Database(url)
    upgrade(database)
    yield database
    database.dispose()
    if name is not None:
        server.drop_database(name)


@pytest.fixture
def database(migrated_store: Database) -> Database:
    """The store's database at the current schema, every table empty."""
    with migrated_store.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    return migrated_store
