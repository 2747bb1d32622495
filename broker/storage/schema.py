"""Which schemas this code can serve on, without alembic: serving processes check it at start and in /readyz.

Importing alembic costs ~10 MiB per process, so only the commands that migrate (``broker db``,
``broker dev``) load it (``broker.storage.migrate``). ``HEAD`` is the newest revision in
``migrations/versions`` (revisions are numbered ``0001``, ``0002``, ...); a unit test fails the moment a
new migration lands without moving it.

Rolling upgrades: every migration declares ``compatible_with``, the oldest code revision (a release's
``HEAD``) that still runs on the schema it leaves: an additive migration keeps the one before it, a
contracting one (dropping or tightening what older code uses) raises it. The migration environment
records the value of the revision the database is at in ``schema_support``, so a release that does
not know a newer revision can still tell whether the schema supports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from broker.storage.db import Database, DatabaseError, first_line, is_missing_table

HEAD = "0017"
KNOWN = frozenset(f"{n:04d}" for n in range(1, int(HEAD) + 1))  # every revision this code knows
RECORDED_FROM = "0009"  # the revision that added schema_support


class Verdict(StrEnum):
    EMPTY = "empty"  # no schema yet
    BEHIND = "behind"  # an older revision: `broker db upgrade` brings it to HEAD
    CURRENT = "current"
    AHEAD = "ahead"  # a newer release migrated it, additively: this code still serves on it
    INCOMPATIBLE = "incompatible"  # a newer release contracted it: this code must not serve on it


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  # the database's
    oldest_code: str | None  # the oldest code revision it supports, as recorded (None before RECORDED_FROM)

    @property
    def verdict(self) -> Verdict:
        if self.revision is None:
            return Verdict.EMPTY
        if self.revision == HEAD:
            return Verdict.CURRENT
        if self.revision in KNOWN:
            return Verdict.BEHIND
        return Verdict.AHEAD if self.oldest_code in KNOWN else Verdict.INCOMPATIBLE

    @property
    def serves(self) -> bool:
        return self.verdict in (Verdict.CURRENT, Verdict.AHEAD)

    def problem(self) -> str | None:
        """Why this code cannot serve on the schema, with advice that works; None when it can."""
        verdict = self.verdict
        if verdict is Verdict.EMPTY:
            return "the database has no schema yet: run `broker db upgrade`"
        if verdict is Verdict.BEHIND:
            return (f"the database schema is at revision {self.revision}, this broker needs {HEAD}: "
                    "run `broker db upgrade`")
        if verdict is Verdict.INCOMPATIBLE:
            supports = f"supports releases from revision {self.oldest_code} on" if self.oldest_code else \
                "records no release it supports"
            return (f"the database schema is at revision {self.revision}, newer than this broker ({HEAD}), and "
                    f"{supports}: run a release that knows revision {self.revision}")
        return None


def read(database: Database) -> SchemaState:
    revision = database.schema_revision()
    if revision is None or revision in KNOWN and revision < RECORDED_FROM:
        return SchemaState(revision, None)
    try:
        with database.engine.connect() as conn:
            return SchemaState(revision, conn.execute(_OLDEST).scalar())
    except (OperationalError, ProgrammingError) as exc:
        if is_missing_table(exc):  # migrated by something that does not record support
            return SchemaState(revision, None)
        raise DatabaseError(f"database unreachable: {first_line(exc)}") from None


def require_usable(database: Database) -> SchemaState:
    """Raise ``DatabaseError`` (with advice that works) unless this code can serve on the schema."""
    state = read(database)
    problem = state.problem()
    if problem:
        raise DatabaseError(problem)
    return state


_OLDEST = text("SELECT oldest_code_revision FROM schema_support WHERE id = 1")


def record_support(conn: Connection, oldest_code_revision: str) -> None:
    """Called by the migration environment, in the migration's transaction."""
    conn.execute(text("DELETE FROM schema_support WHERE id = 1"))
    conn.execute(text("INSERT INTO schema_support (id, oldest_code_revision) VALUES (1, :oldest)"),
                 {"oldest": oldest_code_revision})
