"""Migration 0007 (``oidc_scope``) over a database holding rows from before it, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text

from broker.storage.db import Database
from broker.storage.migrate import alembic_config

TABLES = ("pending_authorizations", "authorization_codes", "refresh_token_families")


@pytest.fixture
def at_0006(database_url: str):
    database = Database(database_url)
    command.upgrade(alembic_config(database), "0006")
    with database.engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, display_name, status, created_at, updated_at) "
                          "VALUES ('u1', 'U', 'active', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO refresh_token_families (id, client_id, user_id, resource, scope, current_hash, "
                          "generation, created_at, last_used_at, expires_at) VALUES ('f1', 'c1', 'u1', "
                          "'https://r.example', 'a', 'h1', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00', "
                          "'2026-02-01 00:00:00')"))
    yield database
    database.dispose()


def columns(database: Database, table: str) -> set[str]:
    return {c["name"] for c in inspect(database.engine).get_columns(table)}


def test_existing_rows_get_no_oidc_scope_and_downgrade_drops_it(at_0006: Database) -> None:
    command.upgrade(alembic_config(at_0006), "0007")
    assert all("oidc_scope" in columns(at_0006, table) for table in TABLES)
    with at_0006.engine.connect() as conn:  # a family from before 0007 refreshes without an ID token
        assert conn.execute(text("SELECT oidc_scope FROM refresh_token_families WHERE id = 'f1'")).scalar() is None
    command.downgrade(alembic_config(at_0006), "0006")
    assert not any("oidc_scope" in columns(at_0006, table) for table in TABLES)
    with at_0006.engine.connect() as conn:
        assert conn.execute(text("SELECT scope FROM refresh_token_families WHERE id = 'f1'")).scalar() == "a"
