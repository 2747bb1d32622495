"""What several repositories do with a statement: count the rows a change touched, and insert unless the
row exists (each dialect's own ``INSERT ... ON CONFLICT DO NOTHING``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Executable, Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from broker.storage.models import Base

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql


def rowcount(session: Session, statement: Executable) -> int:
    """How many rows an UPDATE or DELETE changed (``Session.execute`` is typed for any statement)."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def insert_unless_present(session: Session, table: Table | type[Base],
                          index_elements: Sequence[str] | None = None) -> postgresql.Insert | sqlite.Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``: two processes may insert the same row at once."""
    return dialect_insert(session.get_bind().dialect.name, table).on_conflict_do_nothing(index_elements=index_elements)


def dialect_insert(dialect: str, table: Table | type[Base]) -> postgresql.Insert | sqlite.Insert:
    """The dialect's own INSERT (it has ON CONFLICT); SQLAlchemy's PostgreSQL package loads only for PostgreSQL."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    return sqlite.insert(table)
