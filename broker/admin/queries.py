"""Read-only queries behind the console pages: each bounded (a page at a time) and on an index."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from broker.storage.models import (
    AuditEvent,
    Client,
    McpServer,
    RefreshTokenFamily,
    UpstreamIdentity,
    User,
)

PAGE_SIZE = 50
ISSUED = ("token.issued", "token.refreshed")
DENIED = ("authorization.denied", "authorization.decision", "authorization.failed")
OFFBOARDED = ("user.offboarded", "user.sessions_revoked")


@dataclass(frozen=True)
class Dashboard:
    users: int
    active_today: int
    servers: int
    clients: int
    issued_24h: int
    issued_per_hour: list[int]
    denied_per_hour: list[int]
    hours: list[dt.datetime]
    recent_denials: list[AuditEvent]
    recent_offboardings: list[AuditEvent]


def dashboard(session: Session, now: dt.datetime) -> Dashboard:
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=23)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    issued = _per_hour(session, ISSUED, start, None)
    denied = _per_hour(session, DENIED, start, "denied")
    return Dashboard(
        users=_count(session, select(func.count()).select_from(User)),
        active_today=_count(session, select(func.count()).select_from(User).where(User.last_login_at >= today)),
        servers=_count(session, select(func.count()).select_from(McpServer)),
        clients=_count(session, select(func.count()).select_from(Client)),
        issued_24h=_count(session, select(func.count()).select_from(AuditEvent).where(
            AuditEvent.event_type.in_(ISSUED), AuditEvent.occurred_at >= now - dt.timedelta(hours=24))),
        issued_per_hour=issued, denied_per_hour=denied,
        hours=[start + dt.timedelta(hours=i) for i in range(24)],
        recent_denials=_recent(session, DENIED, outcome="denied"),
        recent_offboardings=_recent(session, OFFBOARDED))


def _count(session: Session, query: Select) -> int:
    return int(session.scalar(query) or 0)


def _per_hour(session: Session, types: Sequence[str], start: dt.datetime, outcome: str | None) -> list[int]:
    query = select(AuditEvent.occurred_at).where(AuditEvent.event_type.in_(types), AuditEvent.occurred_at >= start)
    if outcome:
        query = query.where(AuditEvent.outcome == outcome)
    buckets = [0] * 24
    for at in session.scalars(query.execution_options(yield_per=5000)):
        index = int((at - start).total_seconds() // 3600)
        if 0 <= index < 24:
            buckets[index] += 1
    return buckets


def _recent(session: Session, types: Sequence[str], outcome: str | None = None, limit: int = 8) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.event_type.in_(types))
    if outcome:
        query = query.where(AuditEvent.outcome == outcome)
    return list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))


@dataclass(frozen=True)
class Page:
    rows: list
    page: int
    has_next: bool


def search_users(session: Session, text: str, page: int, status: str | None = None) -> Page:
    query = select(User)
    if text:
        like = f"%{text.lower()}%"
        query = query.where(or_(func.lower(User.email).like(like), func.lower(User.display_name).like(like),
                                User.id == text))
    if status in ("active", "offboarded"):
        query = query.where(User.status == status)
    rows = list(session.scalars(query.order_by(User.email, User.id).offset((page - 1) * PAGE_SIZE)
                                .limit(PAGE_SIZE + 1)))
    return Page(rows[:PAGE_SIZE], page, len(rows) > PAGE_SIZE)


@dataclass(frozen=True)
class UserDetail:
    user: User
    groups: list[str]
    identities: list[UpstreamIdentity]
    families: list[RefreshTokenFamily]
    recent_events: list[AuditEvent] = field(default_factory=list)


def user_detail(session: Session, user: User, groups: list[str]) -> UserDetail:
    identities = list(session.scalars(select(UpstreamIdentity).where(UpstreamIdentity.user_id == user.id)))
    families = list(session.scalars(select(RefreshTokenFamily).where(
        RefreshTokenFamily.user_id == user.id, RefreshTokenFamily.revoked_at.is_(None))
        .order_by(RefreshTokenFamily.last_used_at.desc()).limit(PAGE_SIZE)))
    events = list(session.scalars(select(AuditEvent).where(AuditEvent.user_id == user.id)
                                  .order_by(AuditEvent.id.desc()).limit(10)))
    return UserDetail(user, groups, identities, families, events)


@dataclass(frozen=True)
class AuditFilter:
    user_id: str = ""
    server_id: str = ""
    client_id: str = ""
    event_type: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def apply(self, query: Select) -> Select:
        if self.user_id:
            query = query.where(AuditEvent.user_id == self.user_id)
        if self.server_id:
            query = query.where(AuditEvent.server_id == self.server_id)
        if self.client_id:
            query = query.where(AuditEvent.client_id == self.client_id)
        if self.event_type:
            query = query.where(AuditEvent.event_type == self.event_type)
        if self.since:
            query = query.where(AuditEvent.occurred_at >= self.since)
        if self.until:
            query = query.where(AuditEvent.occurred_at < self.until)
        return query


def audit_page(session: Session, where: AuditFilter, before_id: int | None) -> tuple[list[AuditEvent], int | None]:
    """Newest first, ``PAGE_SIZE`` at a time (keyset on id); returns the rows and the next page's cursor."""
    query = where.apply(select(AuditEvent))
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(PAGE_SIZE + 1)))
    return rows[:PAGE_SIZE], rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None


def audit_stream(session: Session, where: AuditFilter) -> Select:
    return where.apply(select(AuditEvent)).order_by(AuditEvent.id).execution_options(yield_per=1000)


def event_types(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.event_type).distinct().order_by(AuditEvent.event_type)))
