"""Text search in columns as people type it: part of the value, any case, ``%`` and ``_`` taken literally."""

from __future__ import annotations

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import SQLCoreOperations


def contains(session: Session, column: SQLCoreOperations[str | None], text: str) -> ColumnElement[bool]:
    """``column`` contains ``text`` ignoring case.

    SQLite's LIKE already ignores the case of ASCII letters; lower() on both sides would double the cost of a
    pass over a large table. PostgreSQL has ILIKE.
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if session.get_bind().dialect.name == "sqlite":
        return column.like(f"%{escaped}%", escape="\\")
    return column.ilike(f"%{escaped}%", escape="\\")
