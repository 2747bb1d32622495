"""What several repositories do with a statement: count the rows a change touched, and insert unless the
row exists (each dialect's own ``INSERT ... ON CONFLICT DO NOTHING``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from broker.storage.models import Base


def rowcount(session: Session, statement: Executable) -> int:
    """How many rows an UPDATE or DELETE changed (``Session.execute`` is typed for any statement)."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def insert_unless_present(session: Session, table: Table | type[Base],
                          index_elements: Sequence[str] | None = None) -> postgresql.Insert | sqlite.Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``: two processes may insert the same row at once."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)
