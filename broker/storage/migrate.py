"""Alembic, driven from code: upgrade to head. Only the commands that migrate import this module (alembic
costs ~10 MiB per process); serving processes check the revision with ``broker.storage.schema``."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from broker.bundled import MIGRATIONS
from broker.storage.db import Database


def alembic_config(database: Database | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
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
