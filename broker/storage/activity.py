"""The console dashboard's reads: counts, events per hour and the latest events of a kind (bounded, on indexes)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Collection, Sequence
from typing import NamedTuple

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from broker.storage.models import AuditEvent, Client, User

DENIED = "denied"  # the outcome a refused request records (broker.audit.Outcome.DENIED)
# A denied sign-in records the policy's decision and then the sign-in's failure: the failure is the denial.
NOT_DENIALS = ("authorization.decision",)


class Counts(NamedTuple):
    users: int
    active_today: int  # users signed in since the start of the day
    clients: int
    issued: int  # events of the issuing types since the given time


def denial_conditions() -> tuple[ColumnElement[bool], ...]:
    """One event per refused request (sign-ins, token requests, console sign-ins), whatever refused it."""
    return AuditEvent.outcome == DENIED, AuditEvent.event_type.not_in(NOT_DENIALS)


def counts(session: Session, today: dt.datetime, issued_types: Collection[str], issued_since: dt.datetime) -> Counts:
    return Counts(
        users=_count(session, select(func.count()).select_from(User)),
        active_today=_count(session, select(func.count()).select_from(User).where(User.last_login_at >= today)),
        clients=_count(session, select(func.count()).select_from(Client)),
        issued=_count(session, select(func.count()).select_from(AuditEvent).where(
            AuditEvent.event_type.in_(issued_types), AuditEvent.occurred_at >= issued_since)))


def _count(session: Session, query: Select[int]) -> int:
    return int(session.scalar(query) or 0)


def per_hour(session: Session, event_types: Collection[str], start: dt.datetime) -> list[int]:
    """Events of the types per hour for 24 hours from ``start``: 24 range counts in one statement, each on an
    index of the time."""
    edges = [start + dt.timedelta(hours=i) for i in range(25)]
    counted = [select(func.count()).select_from(AuditEvent)
               .where(AuditEvent.event_type.in_(event_types), AuditEvent.occurred_at >= low,
                      AuditEvent.occurred_at < high).scalar_subquery()
               for low, high in itertools.pairwise(edges)]
    return [int(n or 0) for n in session.execute(select(*counted)).one()]


def denials_per_hour(session: Session, start: dt.datetime) -> list[int]:
    """Denials per hour for 24 hours from ``start``. Denials are few: read their times, newest first on the
    outcome index, back to the first event since ``start`` (no event since then has a smaller id), and count."""
    first = select(func.min(AuditEvent.id)).where(AuditEvent.occurred_at >= start).scalar_subquery()
    times = session.scalars(select(AuditEvent.occurred_at).where(
        *denial_conditions(), AuditEvent.id >= first, AuditEvent.occurred_at >= start))
    buckets = [0] * 24
    for at in times:
        buckets[min(int((at - start).total_seconds() // 3600), 23)] += 1
    return buckets


def latest(session: Session, event_types: Collection[str], limit: int) -> list[AuditEvent]:
    """The latest ``limit`` events of the types, newest first."""
    return _latest(session, (AuditEvent.event_type.in_(event_types),), limit)


def latest_denials(session: Session, limit: int) -> list[AuditEvent]:
    """The latest ``limit`` denials (``denial_conditions``), newest first."""
    return _latest(session, denial_conditions(), limit)


def _latest(session: Session, where: Sequence[ColumnElement[bool]], limit: int) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(*where).order_by(AuditEvent.id.desc()).limit(limit)))
