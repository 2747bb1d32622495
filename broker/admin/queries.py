"""Read-only queries behind the console pages: each bounded (a page at a time) and on an index."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from broker.admin.names import Names, for_events, lookup
from broker.storage import activity, audit_events, mcp_servers, user_grants, users
from broker.storage.enums import UserStatus
from broker.storage.grants import FamilyRow
from broker.storage.models import AuditEvent, UpstreamIdentity
from broker.storage.users import UserRow

PAGE_SIZE = 50
ISSUED = ("token.issued", "token.refreshed")
OFFBOARDED = ("user.offboarded", "user.sessions_revoked")
RECENT = 8  # events in each of the dashboard's recent lists


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
    names: Names


def dashboard(session: Session, now: dt.datetime) -> Dashboard:
    """Counts, the hourly chart and the recent lists; a denial counts once (``activity.denial_conditions``)."""
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=23)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    counts = activity.counts(session, today, ISSUED, now - dt.timedelta(hours=24))
    recent_denials = activity.latest_denials(session, RECENT)
    recent_offboardings = activity.latest(session, OFFBOARDED, RECENT)
    return Dashboard(
        users=counts.users, active_today=counts.active_today, servers=mcp_servers.count(session),
        clients=counts.clients, issued_24h=counts.issued,
        issued_per_hour=activity.per_hour(session, ISSUED, start),
        denied_per_hour=activity.denials_per_hour(session, start),
        hours=[start + dt.timedelta(hours=i) for i in range(24)],
        recent_denials=recent_denials, recent_offboardings=recent_offboardings,
        names=for_events(session, recent_denials + recent_offboardings))


@dataclass(frozen=True)
class Page:
    rows: list[UserRow]
    page: int
    has_next: bool


def search_users(session: Session, text: str, page: int, status: str | None = None) -> Page:
    rows = users.search(session, text, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1,
                        status=UserStatus(status) if status in tuple(UserStatus) else None)
    return Page(rows[:PAGE_SIZE], page, len(rows) > PAGE_SIZE)


@dataclass(frozen=True)
class UserDetail:
    """A user's page: who, their sessions (refresh-token families, by client and server name), recent events."""

    user: UserRow
    groups: list[str]
    identities: list[UpstreamIdentity]
    families: list[FamilyRow]
    recent_events: list[AuditEvent] = field(default_factory=list)
    names: Names = field(default_factory=Names)
    servers_by_resource: dict[str, str] = field(default_factory=dict)  # resource URI -> server name
    offboarding: AuditEvent | None = None  # the event that offboarded them, while they are


def user_detail(session: Session, user: UserRow, groups: list[str]) -> UserDetail:
    identities = users.identities_of(session, user.id)
    families = live_families(session, user.id)
    events = audit_events.of_user(session, user.id, 10)
    offboarded = [] if user.status == UserStatus.ACTIVE else audit_events.of_user(session, user.id, 1,
                                                                                    "user.offboarded")
    offboarding = offboarded[0] if offboarded else None
    seen = for_events(session, events + ([offboarding] if offboarding else []))
    clients = lookup(session, client_ids=[f.client_id for f in families]).clients
    found = Names(seen.users, {**seen.clients, **clients}, seen.servers, seen.emails)
    resources = {f.resource for f in families}
    by_resource = mcp_servers.names_by_resource(session, resources)
    return UserDetail(user, groups, identities, families, events, found, by_resource, offboarding)


def live_families(session: Session, user_id: str) -> list[FamilyRow]:
    """The user's refresh-token families that are not revoked, most recently used first (a page at most)."""
    return user_grants.live_families(session, user_id, PAGE_SIZE)
