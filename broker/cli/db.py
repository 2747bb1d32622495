"""``broker db``: schema management."""

from __future__ import annotations

import argparse
import sys

from broker.cli.common import (
    Commands,
    common_flags,
    database_errors,
    json_flag,
    load_settings,
    open_database,
    print_json,
)
from broker.storage import schema

EXPLAINED = {
    schema.Verdict.EMPTY: "no schema yet: run `broker db upgrade`",
    schema.Verdict.BEHIND: "older than this broker: run `broker db upgrade`",
    schema.Verdict.CURRENT: "current",
    schema.Verdict.AHEAD: "migrated by a newer release, and still supports this one",
    schema.Verdict.INCOMPATIBLE: "migrated by a newer release that this one cannot run beside: run a release "
                                 "that knows this revision",
}


def register(commands: Commands) -> None:
    db = commands.add_parser("db", help="database schema", description="Manage the database schema.")
    sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", parents=[common_flags()], help="bring the schema to the current version",
                        description="Apply alembic migrations up to head (creates the schema on an empty database). "
                                    "A schema that a newer release migrated is left alone while it still supports "
                                    "this release. Progress goes to stderr when it takes more than a second.")
    up.set_defaults(handler=upgrade)
    st = sub.add_parser("status", parents=[common_flags()], help="show the schema version",
                        description="Print the database's schema revision, the revision this broker needs, the "
                                    "oldest release the schema supports, and whether this broker can serve on it "
                                    "(exit 0) or not (exit 1).")
    json_flag(st)
    st.set_defaults(handler=status)


def upgrade(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args), require_schema=False)
    with database_errors():
        from broker.storage import migrate  # alembic only in the commands that migrate (broker.storage.schema)

        before, after = migrate.upgrade(database, report=lambda line: print(f"broker: {line}", file=sys.stderr))
    if before == after and after != schema.HEAD:
        print(f"schema at {after}, newer than this broker ({schema.HEAD}) and still supporting it: nothing to do")
    else:
        print(f"schema at {after}" + (" (unchanged)" if before == after else f" (was {before or 'empty'})"))
    return 0


def status(args: argparse.Namespace) -> int:
    database = open_database(load_settings(args), require_schema=False)
    with database_errors():
        state = schema.read(database)
    if args.json:
        print_json({"database": state.revision, "broker": schema.HEAD, "oldest_supported": state.oldest_code,
                    "state": str(state.verdict), "serves": state.serves})
    else:
        print(f"database: {state.revision or 'empty'}\nrequired: {schema.HEAD}")
        if state.oldest_code:
            print(f"supports: releases from revision {state.oldest_code} on")
        print(f"state:    {EXPLAINED[state.verdict]}")
    return 0 if state.serves else 1
