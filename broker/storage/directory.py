"""Users as policy simulations see them, in bulk: identity, status, groups, and the latest upstream claims.

Simulations (the access matrix, a policy dry run, who-can) look at every known user: those who signed
in and those an IdP provisioned through SCIM (they have an upstream identity but no sign-in yet). Three
statements whatever the number of users, instead of two per user.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, TypeVarTuple

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from broker.storage.enums import UserStatus
from broker.storage.models import Group, GroupMembership, UpstreamIdentity, User
from broker.storage.search import contains

_OLDEST = dt.datetime.min.replace(tzinfo=dt.UTC)
Columns = TypeVarTuple("Columns")


@dataclass(frozen=True)
class DirectoryUser:
    """A known user; ``idp_id`` and ``claims`` come from their latest upstream sign-in (or provisioning)."""

    id: str
    email: str | None
    display_name: str
    status: str
    idp_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, hash=False)
    groups: tuple[str, ...] = ()


def users(session: Session, *, active_only: bool = False,
          user_ids: Collection[str] | None = None) -> list[DirectoryUser]:
    """Every user (or those of ``user_ids``), ordered by email then id."""
    query = select(User.id, User.email, User.display_name, User.status).order_by(User.email, User.id)
    if active_only:
        query = query.where(User.status == UserStatus.ACTIVE)
    if user_ids is not None:
        query = query.where(User.id.in_(list(user_ids)))
    rows = session.execute(query).all()
    if not rows:
        return []
    only = None if user_ids is None else [row.id for row in rows]
    groups, logins = _groups(session, only), _latest_logins(session, only)
    never: tuple[str | None, dict[str, Any]] = (None, {})
    return [DirectoryUser(row.id, row.email, row.display_name or "", row.status, *logins.get(row.id, never),
                          groups=tuple(sorted(groups.get(row.id, ())))) for row in rows]


def search(session: Session, text: str, limit: int) -> list[DirectoryUser]:
    """Users whose email or display name contains ``text`` (any case), or whose id is ``text``."""
    ids = session.scalars(select(User.id).where(or_(contains(session, User.email, text),
                                                    contains(session, User.display_name, text), User.id == text))
                          .order_by(User.email, User.id).limit(limit)).all()
    return users(session, user_ids=ids) if ids else []


def group_names(session: Session) -> list[str]:
    """Every group name some user is a member of, whatever its source (IdP, SCIM, local)."""
    return list(session.scalars(select(Group.name).join(GroupMembership, GroupMembership.group_id == Group.id)
                                .distinct().order_by(Group.name)))


def count(session: Session, *, active_only: bool = True) -> int:
    query = select(func.count()).select_from(User)
    return int(session.scalar(query.where(User.status == UserStatus.ACTIVE) if active_only else query) or 0)


def _restrict(query: Select[*Columns], column: InstrumentedAttribute[str],
              user_ids: list[str] | None) -> Select[*Columns]:
    return query if user_ids is None else query.where(column.in_(user_ids))


def _groups(session: Session, user_ids: list[str] | None) -> dict[str, list[str]]:
    query = select(GroupMembership.user_id, Group.name).join(Group, Group.id == GroupMembership.group_id)
    found: dict[str, list[str]] = {}
    for user_id, name in session.execute(_restrict(query, GroupMembership.user_id, user_ids)):
        found.setdefault(user_id, []).append(name)
    return found


def _latest_logins(session: Session, user_ids: list[str] | None) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per user, (idp_id, claims) of the identity signed in through last (never signed in counts as oldest)."""
    query = select(UpstreamIdentity.user_id, UpstreamIdentity.idp_id, UpstreamIdentity.claims,
                   UpstreamIdentity.last_login_at)
    latest: dict[str, tuple[dt.datetime, str, dict[str, Any]]] = {}
    for user_id, idp_id, claims, at in session.execute(_restrict(query, UpstreamIdentity.user_id, user_ids)):
        when = at or _OLDEST
        if user_id not in latest or when > latest[user_id][0]:
            latest[user_id] = (when, idp_id, dict(claims or {}))
    return {user_id: (idp_id, claims) for user_id, (_, idp_id, claims) in latest.items()}
