"""Repository for policy versions (append-only)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.storage.models import PolicyVersion


def current_version(session: Session) -> int:
    """The number of the version in force; 0 when no policy was ever loaded."""
    return int(session.scalar(select(func.max(PolicyVersion.version))) or 0)


def get(session: Session, version: int) -> PolicyVersion | None:
    return session.get(PolicyVersion, version)


def history(session: Session, limit: int = 50) -> list[PolicyVersion]:
    return list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.version.desc()).limit(limit)))


def add(session: Session, row: PolicyVersion) -> None:
    session.add(row)
    session.flush()
