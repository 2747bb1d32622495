"""The next release's migrations, built for a test: this release's chain plus an expand step (additive,
still supporting this release) and a contract step (dropping what the expand added, supporting only
releases that know it). Applied with alembic the way ``broker db upgrade`` of that release would."""

from __future__ import annotations

import shutil
from pathlib import Path

from alembic import command
from alembic.config import Config

from broker import bundled
from broker.storage.db import Database
from broker.storage.schema import HEAD

EXPAND = f"{int(HEAD) + 1:04d}"
CONTRACT = f"{int(HEAD) + 2:04d}"

_EXPAND = f'''"""Expand: a new table and a new nullable column (the next release writes both; this one ignores them)."""
import time

import sqlalchemy as sa
from alembic import op

revision = "{EXPAND}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None
compatible_with = "{HEAD}"


def upgrade() -> None:
    time.sleep(SLEEP)  # long enough for requests to the running release to arrive in between
    op.create_table("rollout_notes", sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("note", sa.String(100), nullable=False))
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("rollout_note", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("rollout_note")
    op.drop_table("rollout_notes")
'''

_CONTRACT = f'''"""Contract: the column the expand added goes; releases before {EXPAND} are no longer supported."""
import sqlalchemy as sa
from alembic import op

revision = "{CONTRACT}"
down_revision = "{EXPAND}"
branch_labels = None
depends_on = None
compatible_with = "{EXPAND}"


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("rollout_note")


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("rollout_note", sa.String(100), nullable=True))
'''


def next_release(directory: Path, sleep: float = 0.0) -> Path:
    """A migrations directory: this release's chain, then the expand and contract steps."""
    target = directory / "migrations"
    shutil.copytree(bundled.MIGRATIONS, target, ignore=shutil.ignore_patterns("__pycache__", "alembic.ini"))
    (target / "versions" / f"{EXPAND}_expand.py").write_text(_EXPAND.replace("SLEEP", repr(sleep)))
    (target / "versions" / f"{CONTRACT}_contract.py").write_text(_CONTRACT)
    return target


def migrate(chain: Path, database: Database, revision: str) -> None:
    """``alembic upgrade revision`` with that chain, as the next release's ``broker db upgrade`` does."""
    cfg = Config()
    cfg.set_main_option("script_location", str(chain))
    cfg.attributes["engine"] = database.engine
    command.upgrade(cfg, revision)
