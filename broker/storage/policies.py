"""Repository for policy versions (append-only)."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from broker.storage.hot import Tx
from broker.storage.models import PolicyVersion
from broker.storage.prepared import Prepared

_VERSIONS = PolicyVersion.__table__
_CURRENT = Prepared(select(func.max(_VERSIONS.c.version).label("version")))
_DOCUMENT = Prepared(select(_VERSIONS.c.document).where(_VERSIONS.c.version == bindparam("version")))


def current_version(session: Session) -> int:
    """The number of the version in force; 0 when no policy was ever loaded."""
    return int(session.scalar(select(func.max(PolicyVersion.version))) or 0)


async def current_version_hot(tx: Tx) -> int:
    return int(await tx.scalar(_CURRENT, {}) or 0)


async def document_hot(tx: Tx, version: int) -> str | None:
    document = await tx.scalar(_DOCUMENT, {"version": version})
    return None if document is None else str(document)


def get(session: Session, version: int) -> PolicyVersion | None:
    return session.get(PolicyVersion, version)


def history(session: Session, limit: int = 50) -> list[PolicyVersion]:
    return list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.version.desc()).limit(limit)))


def add(session: Session, row: PolicyVersion) -> None:
    session.add(row)
    session.flush()
