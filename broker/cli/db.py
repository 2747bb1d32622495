"""``broker db``: schema management."""

from __future__ import annotations

import argparse

from broker.cli.common import common_flags, database_errors, load_settings, open_database
from broker.storage import schema


def register(commands: argparse._SubParsersAction) -> None:
    db = commands.add_parser("db", help="database schema", description="Manage the database schema.")
    sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", parents=[common_flags()], help="bring the schema to the current version",
                        description="Apply alembic migrations up to head (creates the schema on an empty database).")
    up.set_defaults(handler=upgrade)
    st = sub.add_parser("status", parents=[common_flags()], help="show the schema version",
                        description="Print the database's schema revision and the revision this broker needs.")
    st.set_defaults(handler=status)


def upgrade(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args), require_schema=False)
    with database_errors():
        from broker.storage import migrate  # alembic only in the commands that migrate (broker.storage.schema)

        before, after = migrate.upgrade(database)
    print(f"schema at {after}" + (" (unchanged)" if before == after else f" (was {before or 'empty'})"))
    return 0


def status(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args), require_schema=False)
    with database_errors():
        current, head = database.schema_revision(), schema.HEAD
    print(f"database: {current or 'empty'}\nrequired: {head}")
    if current != head:
        print("run `broker db upgrade`")
        return 1
    return 0
