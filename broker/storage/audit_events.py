"""The audit log's events: adding one (``broker.audit.record`` checks what it holds), and reading them for the
export and a user's page (sealing is ``storage.audit_chain``'s)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import Session

from broker.storage.hot import Tx
from broker.storage.models import AuditEvent
from broker.storage.prepared import Prepared

BATCH = 1000  # events fetched at a time by ``in_order``: the export streams a log of any length
COLUMNS = ("occurred_at", "event_type", "actor", "user_id", "client_id", "server_id", "outcome", "data")
_INSERT = Prepared(insert(AuditEvent.__table__), columns=COLUMNS)  # every request writes one: prebuilt


def add(session: Session, values: Mapping[str, Any]) -> None:
    """Add one event: a value for each of ``COLUMNS``."""
    _INSERT.rowcount(session, values)


async def add_hot(tx: Tx, values: Mapping[str, Any]) -> None:
    await tx.rowcount(_INSERT, values)


def count(session: Session, since: dt.datetime | None = None) -> int:
    """How many events there are (those at or after ``since``, when given)."""
    return int(session.scalar(select(func.count()).select_from(_since(select(AuditEvent), since).subquery())) or 0)


def in_order(session: Session, since: dt.datetime | None = None) -> Iterator[AuditEvent]:
    """Every event (at or after ``since``, when given), oldest first, fetched ``BATCH`` at a time."""
    query = _since(select(AuditEvent), since).order_by(AuditEvent.id).execution_options(yield_per=BATCH)
    yield from session.scalars(query)


def of_user(session: Session, user_id: str, limit: int, event_type: str | None = None) -> list[AuditEvent]:
    """The user's latest ``limit`` events (of ``event_type``, when given), newest first."""
    query = select(AuditEvent).where(AuditEvent.user_id == user_id)
    if event_type is not None:
        query = query.where(AuditEvent.event_type == event_type)
    return list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))


def _since(query: Select[AuditEvent], since: dt.datetime | None) -> Select[AuditEvent]:
    return query if since is None else query.where(AuditEvent.occurred_at >= since)
