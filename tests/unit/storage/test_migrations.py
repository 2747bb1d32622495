"""Migrations from an empty database, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from broker.storage import schema
from broker.storage.db import Database, DatabaseError
from broker.storage.migrate import alembic_config, head_revision, upgrade
from broker.storage.models import Base
from broker.storage.schema import require_usable
from tests.support.migration_chain import CONTRACT, EXPAND, migrate, next_release

REQUIRED_TABLES = {
    "users", "upstream_identities", "groups", "group_memberships", "clients", "mcp_servers",
    "authorization_codes", "refresh_token_families", "rotated_refresh_tokens", "revocations",
    "signing_keys", "audit_events", "pending_authorizations", "consents", "seen_jtis",
    "audit_chain_head", "policy_versions",
}


@pytest.fixture
def empty(database_url: str):
    database = Database(database_url)
    yield database
    database.dispose()


def test_upgrade_from_empty_creates_every_table(empty: Database) -> None:
    assert empty.schema_revision() is None
    before, after = upgrade(empty)
    assert (before, after) == (None, head_revision())
    assert REQUIRED_TABLES <= set(inspect(empty.engine).get_table_names())
    assert empty.schema_revision() == head_revision()


def test_the_serving_code_needs_the_newest_migration() -> None:
    # broker.storage.schema.HEAD stands in for alembic where the broker serves: move it with every migration
    assert schema.HEAD == head_revision(), "a migration landed: set broker.storage.schema.HEAD to its revision"


def test_the_serving_code_knows_every_revision_of_the_chain() -> None:
    revisions = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    assert schema.KNOWN == revisions


def test_every_migration_says_which_code_still_runs_on_its_schema() -> None:
    scripts = list(reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions())))
    previous = "0000"
    for script in scripts:
        if script.revision < schema.RECORDED_FROM:
            continue
        declared = script.module.compatible_with
        assert previous <= declared <= script.revision, f"{script.revision}: compatible_with {declared!r}"
        previous = declared


def test_upgrade_records_the_oldest_code_the_schema_supports(empty: Database) -> None:
    upgrade(empty)
    head = ScriptDirectory.from_config(alembic_config()).get_revision(head_revision())
    assert schema.read(empty) == schema.SchemaState(head_revision(), head.module.compatible_with)
    assert schema.read(empty).verdict is schema.Verdict.CURRENT


def test_this_release_serves_on_an_expanded_schema_and_refuses_a_contracted_one(empty: Database, tmp_path) -> None:
    chain = next_release(tmp_path)
    upgrade(empty)
    migrate(chain, empty, EXPAND)
    expanded = require_usable(empty)
    assert (expanded.revision, expanded.oldest_code, expanded.verdict) == (EXPAND, schema.HEAD, schema.Verdict.AHEAD)
    assert upgrade(empty) == (EXPAND, EXPAND)  # this release's `broker db upgrade` leaves it alone
    migrate(chain, empty, CONTRACT)
    with pytest.raises(DatabaseError) as refused:
        require_usable(empty)
    assert str(refused.value) == (f"the database schema is at revision {CONTRACT}, newer than this broker "
                                  f"({schema.HEAD}), and supports releases from revision {EXPAND} on: run a "
                                  f"release that knows revision {CONTRACT}")
    with pytest.raises(DatabaseError, match=f"run a release that knows revision {CONTRACT}"):
        upgrade(empty)
    assert schema.read(empty).revision == CONTRACT


def test_upgrade_twice_is_a_no_op(empty: Database) -> None:
    upgrade(empty)
    assert upgrade(empty) == (head_revision(), head_revision())


def test_migrations_match_the_models(empty: Database) -> None:
    upgrade(empty)
    with empty.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_downgrade_to_empty_and_back(empty: Database) -> None:
    from alembic import command

    upgrade(empty)
    command.downgrade(alembic_config(empty), "base")
    assert not REQUIRED_TABLES & set(inspect(empty.engine).get_table_names())
    upgrade(empty)
    assert REQUIRED_TABLES <= set(inspect(empty.engine).get_table_names())


def test_empty_database_is_refused_naming_the_command(empty: Database) -> None:
    with pytest.raises(DatabaseError, match=r"run `broker db upgrade`"):
        require_usable(empty)


def test_out_of_date_schema_is_refused_naming_the_command(empty: Database) -> None:
    upgrade(empty)
    with empty.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    with pytest.raises(DatabaseError, match=r"at revision 0001, this broker needs .*: run `broker db upgrade`"):
        require_usable(empty)


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'b.db'}")
    with database.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_unreachable_database_is_one_clear_line() -> None:
    database = Database("postgresql://broker@127.0.0.1:1/none")
    with pytest.raises(DatabaseError) as info:
        database.ping()
    assert str(info.value).startswith("database unreachable:") and "\n" not in str(info.value)


# A client row with the columns of the first schema, for the steps that add client columns.
OLD_CLIENT = text("INSERT INTO clients (id, name, kind, status, token_endpoint_auth_method, redirect_uris, "
                  "grant_types, trusted, metadata, created_at, updated_at) VALUES ('c1', 'Old', 'preregistered', "
                  "'active', 'none', '[]', '[]', false, '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')")


def test_each_step_upgrades_a_database_holding_rows(empty: Database) -> None:
    """Columns added later get defaults for rows written before them (PostgreSQL enforces NOT NULL)."""
    from alembic import command

    command.upgrade(alembic_config(empty), "0001")
    with empty.engine.begin() as conn:
        conn.execute(OLD_CLIENT)
    upgrade(empty)
    with empty.engine.connect() as conn:
        row = conn.execute(text("SELECT scopes, may_introspect FROM clients WHERE id = 'c1'")).one()
    assert row.may_introspect in (False, 0)


def test_a_jwt_id_is_accepted_once_per_database(empty: Database) -> None:
    import datetime as dt

    from broker.storage import grants

    upgrade(empty)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    with empty.transaction() as session:
        assert grants.first_use_of_jti(session, "a" * 64, "test", later) is True
        assert grants.first_use_of_jti(session, "a" * 64, "test", later) is False
    with empty.transaction() as session:
        assert grants.first_use_of_jti(session, "a" * 64, "test", later) is False


def test_upgrade_keeps_only_emails_an_idp_vouched_for(empty: Database) -> None:
    """0012: an address no IdP verified stops being anyone's email (it stays readable as unverified_email)."""
    from alembic import command

    command.upgrade(alembic_config(empty), "0011")
    rows = {"vouched": ("a@example.com", {"email": "a@example.com", "email_verified": True}),
            "unverified": ("alice@contoso.com", {"email": "alice@contoso.com", "email_verified": False}),
            "scim": ("alice@example.com", {})}
    with empty.engine.begin() as connection:
        for name, (email, claims) in rows.items():
            connection.execute(text("INSERT INTO users (id, email, display_name, status, created_at, updated_at) "
                                    "VALUES (:id, :email, '', 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                               {"id": name, "email": email})
            connection.execute(text("INSERT INTO upstream_identities (id, user_id, idp_id, subject, email, claims, "
                                    "created_at) VALUES (:id, :id, 'idp', :id, :email, :claims, CURRENT_TIMESTAMP)"),
                               {"id": name, "email": email, "claims": json.dumps(claims)})
    command.upgrade(alembic_config(empty), "0012")
    with empty.engine.connect() as connection:
        users = dict(connection.execute(text("SELECT id, email FROM users")).all())
        identities = {row.id: (row.email, json.loads(row.claims) if isinstance(row.claims, str) else row.claims)
                      for row in connection.execute(text("SELECT id, email, claims FROM upstream_identities"))}
    assert users == {"vouched": "a@example.com", "unverified": None, "scim": None}
    assert identities["vouched"] == ("a@example.com", {"email": "a@example.com", "email_verified": True})
    assert identities["unverified"] == (None, {"unverified_email": "alice@contoso.com", "email_verified": False})
    assert identities["scim"] == (None, {})


def test_upgrade_leaves_existing_clients_and_servers_without_a_dpop_requirement(empty: Database) -> None:
    """0016: rows written before it read dpop_bound_access_tokens / require_dpop false (nothing changes for them)."""
    from alembic import command

    command.upgrade(alembic_config(empty), "0015")
    with empty.engine.begin() as conn:
        conn.execute(OLD_CLIENT)
        conn.execute(text("INSERT INTO mcp_servers (id, name, description, resource, scopes, default_scopes, tags, "
                          "enabled, created_at, updated_at) VALUES ('crm', 'CRM', '', 'https://crm.example/mcp', "
                          "'{}', '[]', '[]', true, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
    command.upgrade(alembic_config(empty), "0016")
    with empty.engine.connect() as conn:
        client = conn.execute(text("SELECT dpop_bound_access_tokens FROM clients WHERE id = 'c1'")).scalar()
        server = conn.execute(text("SELECT require_dpop FROM mcp_servers WHERE id = 'crm'")).scalar()
    assert (bool(client), bool(server)) == (False, False) and client is not None and server is not None
