"""Which schema this code needs, without alembic: serving processes check it at start and in /readyz.

Importing alembic costs ~10 MiB per process, so only the commands that migrate
(``broker db``, ``broker dev``) load it (``broker.storage.migrate``). ``HEAD`` is the newest
revision in ``migrations/versions``; a unit test fails the moment a new migration lands without
moving it.
"""

from __future__ import annotations

from broker.storage.db import Database, DatabaseError

HEAD = "0008"


def require_current(database: Database) -> None:
    """Raise ``DatabaseError`` naming ``broker db upgrade`` unless the schema is at ``HEAD``."""
    current = database.schema_revision()
    if current is None:
        raise DatabaseError("the database has no schema yet: run `broker db upgrade`")
    if current != HEAD:
        raise DatabaseError(f"the database schema is at revision {current}, this broker needs {HEAD}: "
                            "run `broker db upgrade`")
