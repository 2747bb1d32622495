"""Reads of the audit log for its export (writing and sealing it is ``broker.audit``'s)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from broker.storage.models import AuditEvent

BATCH = 1000  # events fetched at a time by ``in_order``: the export streams a log of any length


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
