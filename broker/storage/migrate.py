"""Alembic, driven from code: upgrade to head and compare the database with the code."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from broker.storage.db import MIGRATIONS_DIR, Database, DatabaseError


def alembic_config(database: Database | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database is not None:
        cfg.attributes["engine"] = database.engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions is empty"
    return head


def upgrade(database: Database) -> tuple[str | None, str]:
    """Bring the database to head; return (revision before, revision after)."""
    before = database.schema_revision()
    command.upgrade(alembic_config(database), "head")
    return before, head_revision()


def require_current(database: Database) -> None:
    """Raise ``DatabaseError`` naming ``broker db upgrade`` unless the schema is at head."""
    current, head = database.schema_revision(), head_revision()
    if current is None:
        raise DatabaseError("the database has no schema yet: run `broker db upgrade`")
    if current != head:
        raise DatabaseError(f"the database schema is at revision {current}, this broker needs {head}: "
                            "run `broker db upgrade`")
