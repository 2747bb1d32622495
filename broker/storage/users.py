"""Repository for users, their upstream identities, groups and memberships."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection, Iterable
from typing import Any, NamedTuple

from sqlalchemy import JSON, Select, String, bindparam, delete, func, insert, or_, select, type_coerce, update
from sqlalchemy.orm import Session

from broker.storage.enums import UserStatus
from broker.storage.hot import Tx
from broker.storage.models import (
    AdminSession,
    Group,
    GroupMembership,
    RefreshTokenFamily,
    UpstreamIdentity,
    User,
    new_id,
    utcnow,
)
from broker.storage.prepared import Prepared
from broker.storage.search import contains
from broker.storage.statements import insert_unless_present, rowcount


class UserRow(NamedTuple):
    """A user as people read them (the console's pages): ``User``'s columns, read-only."""

    id: str
    email: str | None
    display_name: str
    status: str
    not_before: dt.datetime | None
    offboarded_at: dt.datetime | None
    offboard_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    last_login_at: dt.datetime | None


_ROW = select(*(User.__table__.c[name] for name in UserRow._fields))


def get(session: Session, user_id: str) -> User | None:
    """The user to change in this transaction (offboarding, SCIM, sign-in)."""
    return session.get(User, user_id)


def row(session: Session, user_id: str) -> UserRow | None:
    found = session.execute(_ROW.where(User.__table__.c.id == user_id)).first()
    return None if found is None else UserRow._make(found)


def list_all(session: Session, status: UserStatus | None = None) -> list[UserRow]:
    """Every user (with ``status``, when given), by email then id."""
    query = _ROW if status is None else _ROW.where(User.status == status)
    return _rows(session, query.order_by(User.email, User.id))


def search(session: Session, text: str, *, offset: int, limit: int,
           status: UserStatus | None = None) -> list[UserRow]:
    """Users whose email or display name contains ``text`` (any case, wildcards literal) or whose id is ``text``
    (every user when it is empty), with ``status`` when given; by email then id."""
    query = _ROW
    if text:
        query = query.where(or_(contains(session, User.email, text), contains(session, User.display_name, text),
                                User.id == text))
    if status is not None:
        query = query.where(User.status == status)
    return _rows(session, query.order_by(User.email, User.id).offset(offset).limit(limit))


def _rows(session: Session, query: Select[*tuple[Any, ...]]) -> list[UserRow]:
    return [UserRow._make(found) for found in session.execute(query)]


class Named(NamedTuple):
    """Who a user is to people: id, email, display name."""

    id: str
    email: str | None
    display_name: str


def named(session: Session, *, ids: Collection[str] = (), emails: Collection[str] = ()) -> list[Named]:
    """The users with one of ``ids`` or one of ``emails`` (exactly as stored); nothing is asked for neither."""
    if not ids and not emails:
        return []
    where = or_(User.id.in_(list(ids)), User.email.in_(list(emails)))
    return [Named(row.id, row.email, row.display_name or "")
            for row in session.execute(select(User.id, User.email, User.display_name).where(where))]


def live_family_count(session: Session, user_id: str) -> int:
    """How many of the user's refresh-token families are not revoked (expired ones included)."""
    return int(session.scalar(select(func.count()).select_from(RefreshTokenFamily).where(
        RefreshTokenFamily.user_id == user_id, RefreshTokenFamily.revoked_at.is_(None))) or 0)


class Account(NamedTuple):
    """What a grant reads of a user (``User``'s attribute names), with their latest upstream sign-in
    (``login_*``; None when there was none), which the policy subject and the OIDC claims need."""

    id: str
    email: str | None
    display_name: str
    status: str
    not_before: dt.datetime | None
    login_idp_id: str | None
    login_claims: dict[str, Any] | None
    login_email: str | None


class Standing(NamedTuple):
    status: str
    not_before: dt.datetime | None


_USERS = User.__table__
_LOGINS = UpstreamIdentity.__table__
_ACCOUNT = Prepared(select(_USERS.c.id, _USERS.c.email, _USERS.c.display_name, _USERS.c.status, _USERS.c.not_before,
                           _LOGINS.c.idp_id.label("login_idp_id"), _LOGINS.c.claims.label("login_claims"),
                           _LOGINS.c.email.label("login_email"))
                    .outerjoin(_LOGINS, _LOGINS.c.user_id == _USERS.c.id).where(_USERS.c.id == bindparam("user_id"))
                    .order_by(_LOGINS.c.last_login_at.desc().nulls_last()).limit(1), row=Account, memo=True)
_STANDING = Prepared(select(_USERS.c.status, _USERS.c.not_before).where(_USERS.c.id == bindparam("user_id")),
                     row=Standing)


def standing(session: Session, user_id: str) -> Standing | None:
    """Only ``status`` and ``not_before``: whether the user's tokens still count (introspection)."""
    found: Standing | None = _STANDING.first(session, {"user_id": user_id})
    return found


async def standing_hot(tx: Tx, user_id: str) -> Standing | None:
    found: Standing | None = await tx.first(_STANDING, {"user_id": user_id})
    return found


def account(session: Session, user_id: str) -> Account | None:
    """The user and their latest upstream sign-in in one prebuilt Core select, read fresh on every grant
    (offboarding must end access at once), without loading an ORM object."""
    found: Account | None = _ACCOUNT.first(session, {"user_id": user_id})
    return found


async def account_hot(tx: Tx, user_id: str) -> Account | None:
    found: Account | None = await tx.first(_ACCOUNT, {"user_id": user_id})
    return found


def identity(session: Session, idp_id: str, subject: str) -> UpstreamIdentity | None:
    return session.scalar(select(UpstreamIdentity).where(UpstreamIdentity.idp_id == idp_id,
                                                         UpstreamIdentity.subject == subject))


class LoginIds(NamedTuple):
    """Which upstream identity a sign-in is, and whose."""

    id: str
    user_id: str


_LOGIN_IDS = Prepared(select(_LOGINS.c.id, _LOGINS.c.user_id).where(_LOGINS.c.idp_id == bindparam("idp_id"),
                                                                      _LOGINS.c.subject == bindparam("subject")),
                      row=LoginIds)


def user_id_by_identity(session: Session, idp_id: str, subject: str) -> str | None:
    """The id of the user known at ``idp_id`` as ``subject`` (a prebuilt Core select)."""
    known = login_ids(session, idp_id, subject)
    return None if known is None else known.user_id


async def user_id_by_identity_hot(tx: Tx, idp_id: str, subject: str) -> str | None:
    known = await tx.first(_LOGIN_IDS, {"idp_id": idp_id, "subject": subject})
    return None if known is None else str(known.user_id)


_BY_EMAIL = Prepared(select(_USERS.c.id).where(func.lower(_USERS.c.email) == func.lower(bindparam("email")))
                     .limit(2))
_ADD_USER = Prepared(insert(_USERS), columns=["id", "email", "display_name", "status", "created_at", "updated_at"])
_ADD_IDENTITY = Prepared(insert(_LOGINS), columns=["id", "user_id", "idp_id", "subject", "email", "claims",
                                                   "created_at"])


async def ids_by_email_hot(tx: Tx, email: str) -> list[str]:
    """Ids of at most two users with this email, case-insensitively (two means: not one person)."""
    return [str(user_id) for user_id in await tx.scalars(_BY_EMAIL, {"email": email})]


async def add_user_hot(tx: Tx, *, email: str | None, display_name: str, now: dt.datetime) -> str:
    user_id = new_id()
    await tx.rowcount(_ADD_USER, {"id": user_id, "email": email, "display_name": display_name,
                                  "status": UserStatus.ACTIVE, "created_at": now, "updated_at": now})
    return user_id


async def add_identity_hot(tx: Tx, *, user_id: str, idp_id: str, subject: str, email: str | None,
                           claims: dict[str, Any], now: dt.datetime) -> None:
    """Record an upstream identity; ``hot.Conflict`` when (IdP, subject) is known already."""
    await tx.rowcount(_ADD_IDENTITY, {"id": new_id(), "user_id": user_id, "idp_id": idp_id, "subject": subject,
                                      "email": email, "claims": claims, "created_at": now})


def login_ids(session: Session, idp_id: str, subject: str) -> LoginIds | None:
    """The upstream identity ``subject`` at ``idp_id``; None when there is none."""
    known: LoginIds | None = _LOGIN_IDS.first(session, {"idp_id": idp_id, "subject": subject})
    return known


_RECORD_LOGIN = Prepared(update(_LOGINS).where(_LOGINS.c.id == bindparam("b_id"))
                         .values(email=bindparam("b_email", type_=_LOGINS.c.email.type),
                                 claims=bindparam("b_claims", type_=_LOGINS.c.claims.type),
                                 last_login_at=bindparam("b_now", type_=_LOGINS.c.last_login_at.type)))
_KEEP_REFRESH_TOKEN = Prepared(update(_LOGINS).where(_LOGINS.c.id == bindparam("b_id"))
                               .values(refresh_token_encrypted=bindparam("b_token",
                                                                         type_=_LOGINS.c.refresh_token_encrypted.type)))
_TEXT = String()
_USER_SIGNED_IN = Prepared(update(_USERS).where(_USERS.c.id == bindparam("b_id"))
                           .values(email=func.coalesce(bindparam("b_email", type_=_TEXT), _USERS.c.email),
                                   display_name=func.coalesce(bindparam("b_name", type_=_TEXT), _USERS.c.display_name),
                                   last_login_at=bindparam("b_now", type_=_USERS.c.last_login_at.type),
                                   updated_at=bindparam("b_now", type_=_USERS.c.updated_at.type)))


def record_login(session: Session, identity_id: str, user_id: str, *, email: str | None, name: str | None,
                 claims: dict[str, Any], now: dt.datetime) -> None:
    """A sign-in through ``identity_id``: its claims as the IdP sent them now and the email it vouched for this
    time (None: none), and on the user that email and a display name when there is one (else the stored ones,
    which were vouched for too: nothing else ever writes a user's email)."""
    _RECORD_LOGIN.rowcount(session, {"b_id": identity_id, "b_email": email, "b_claims": claims, "b_now": now})
    _USER_SIGNED_IN.rowcount(session, {"b_id": user_id, "b_email": email or None, "b_name": name or None,
                                       "b_now": now})


def keep_refresh_token(session: Session, identity_id: str, encrypted: bytes) -> None:
    """Store the upstream refresh token (encrypted) of the identity's latest sign-in."""
    _KEEP_REFRESH_TOKEN.rowcount(session, {"b_id": identity_id, "b_token": encrypted})


def identities_by_email(session: Session, email: str) -> list[UpstreamIdentity]:
    return list(session.scalars(select(UpstreamIdentity).where(func.lower(UpstreamIdentity.email) == email.lower())
                                .order_by(UpstreamIdentity.created_at)))


def identities_of(session: Session, user_id: str) -> list[UpstreamIdentity]:
    return list(session.scalars(select(UpstreamIdentity).where(UpstreamIdentity.user_id == user_id)
                                .order_by(UpstreamIdentity.idp_id, UpstreamIdentity.subject)))


def has_identity_at(session: Session, user_id: str, idp_id: str) -> bool:
    return session.scalar(select(UpstreamIdentity.id).where(UpstreamIdentity.user_id == user_id,
                                                            UpstreamIdentity.idp_id == idp_id).limit(1)) is not None


def with_email(session: Session, email: str) -> list[UserRow]:
    """Every user with this email (any case), oldest first."""
    return _rows(session, _ROW.where(func.lower(User.email) == email.lower()).order_by(User.created_at, User.id))


def by_identity_email(session: Session, email: str, idp_id: str | None = None) -> list[User]:
    """The users with an upstream identity (at ``idp_id``, when given) that has this email (any case)."""
    query = select(User).join(UpstreamIdentity, UpstreamIdentity.user_id == User.id) \
        .where(func.lower(UpstreamIdentity.email) == email.lower())
    if idp_id:
        query = query.where(UpstreamIdentity.idp_id == idp_id)
    return list(session.scalars(query.distinct()))


def identity_by_id(session: Session, identity_id: str) -> UpstreamIdentity | None:
    return session.get(UpstreamIdentity, identity_id)


def identity_with_refresh_token(session: Session, user_id: str, idp_ids: Collection[str]) -> UpstreamIdentity | None:
    """The user's identity at one of ``idp_ids`` that holds an upstream refresh token, latest sign-in first."""
    return session.scalars(select(UpstreamIdentity).where(
        UpstreamIdentity.user_id == user_id, UpstreamIdentity.idp_id.in_(idp_ids),
        UpstreamIdentity.refresh_token_encrypted.is_not(None))
        .order_by(UpstreamIdentity.last_login_at.desc())).first()


def idps_of(session: Session, user_id: str, among: Collection[str]) -> list[str]:
    """The IdPs among ``among`` at which the user has an identity, sorted."""
    return sorted(set(session.scalars(select(UpstreamIdentity.idp_id).where(
        UpstreamIdentity.user_id == user_id, UpstreamIdentity.idp_id.in_(among)))))


def by_email(session: Session, email: str) -> list[User]:
    return list(session.scalars(select(User).where(func.lower(User.email) == email.lower()).limit(2)))


def add(session: Session, *rows: object) -> None:
    session.add_all(rows)
    session.flush()


_GROUPS = Group.__table__
_MEMBERSHIPS = GroupMembership.__table__
_GROUP_NAMES = Prepared(select(_GROUPS.c.name).join(_MEMBERSHIPS, _MEMBERSHIPS.c.group_id == _GROUPS.c.id)
                        .where(_MEMBERSHIPS.c.user_id == bindparam("user_id")).order_by(_GROUPS.c.name))
class LatestLogin(NamedTuple):
    """Where a user last signed in upstream: the IdP, the claims it sent then and the email it vouched for."""

    idp_id: str
    claims: dict[str, Any]
    email: str | None


_LATEST_LOGIN = Prepared(select(_LOGINS.c.idp_id, _LOGINS.c.claims, _LOGINS.c.email)
                         .where(_LOGINS.c.user_id == bindparam("user_id"))
                         .order_by(_LOGINS.c.last_login_at.desc().nulls_last()).limit(1), row=LatestLogin)


def group_names(session: Session, user_id: str) -> list[str]:
    return _GROUP_NAMES.scalars(session, {"user_id": user_id})


async def group_names_hot(tx: Tx, user_id: str) -> list[str]:
    return [str(name) for name in await tx.scalars(_GROUP_NAMES, {"user_id": user_id})]


class Member(NamedTuple):
    """A user's ``Account`` and the names of their groups, read in one statement: what a grant needs for the
    user's standing and their policy subject."""

    account: Account
    group_names: list[str]


@functools.cache
def _member(dialect: str) -> Prepared:
    aggregate = func.json_group_array if dialect == "sqlite" else func.json_agg
    names = (select(aggregate(_GROUPS.c.name)).select_from(_GROUPS.join(_MEMBERSHIPS, _MEMBERSHIPS.c.group_id ==
                                                                        _GROUPS.c.id))
             .where(_MEMBERSHIPS.c.user_id == _USERS.c.id).scalar_subquery())
    statement = _ACCOUNT.statement.add_columns(type_coerce(names, JSON).label("group_names"))  # type: ignore[attr-defined]
    return Prepared(statement, memo=True)


async def member_hot(tx: Tx, user_id: str) -> Member | None:
    """``account_hot`` and ``group_names_hot`` in one statement."""
    row = await tx.first(_member(tx.dialect), {"user_id": user_id})
    return None if row is None else Member(Account(*row[:-1]), list(row[-1] or ()))  # json_agg of none: NULL


def latest_login(session: Session, user_id: str) -> LatestLogin | None:
    """The user's most recent upstream sign-in; None if they never signed in."""
    latest: LatestLogin | None = _LATEST_LOGIN.first(session, {"user_id": user_id})
    return latest


_GROUPS_FROM = Prepared(select(_GROUPS.c.name).join(_MEMBERSHIPS, _MEMBERSHIPS.c.group_id == _GROUPS.c.id)
                        .where(_MEMBERSHIPS.c.user_id == bindparam("user_id"), _GROUPS.c.source == bindparam("source")))


def set_groups(session: Session, user_id: str, source: str, names: Iterable[str]) -> None:
    """Make the user's memberships from ``source`` exactly ``names`` (other sources untouched)."""
    wanted = set(names)
    if set(_GROUPS_FROM.scalars(session, {"user_id": user_id, "source": source})) == wanted:
        return  # the usual sign-in: nothing changed upstream, one read
    groups = {g.name: g for g in session.scalars(select(Group).where(Group.source == source,
                                                                     Group.name.in_(wanted)))}
    missing = sorted(wanted - set(groups))
    if missing:  # INSERT ... ON CONFLICT DO NOTHING: two first sign-ins may create the same group at once
        session.execute(insert_unless_present(session, Group.__table__, ["source", "name"]),
                        [{"id": new_id(), "source": source, "name": name, "created_at": utcnow()} for name in missing])
        groups |= {g.name: g for g in session.scalars(select(Group).where(Group.source == source,
                                                                          Group.name.in_(missing)))}
    current = set(session.scalars(
        select(GroupMembership.group_id).join(Group, Group.id == GroupMembership.group_id)
        .where(GroupMembership.user_id == user_id, Group.source == source)))
    keep = {g.id for g in groups.values()}
    stale = current - keep
    if stale:
        session.execute(delete(GroupMembership).where(GroupMembership.user_id == user_id,
                                                      GroupMembership.group_id.in_(stale)))
    session.add_all(GroupMembership(user_id=user_id, group_id=gid) for gid in sorted(keep - current))
    session.flush()


def console_session(session: Session, session_id: str) -> AdminSession | None:
    return session.get(AdminSession, session_id)


def end_console_session(session: Session, session_id: str, now: dt.datetime) -> None:
    """End one admin console session (sign-out), once."""
    session.execute(update(AdminSession).where(AdminSession.id == session_id, AdminSession.ended_at.is_(None))
                    .values(ended_at=now))


def end_console_sessions(session: Session, user_id: str, now: dt.datetime) -> int:
    """End every admin console session of a user (offboarding, a session revocation from the IdP)."""
    live = (AdminSession.user_id == user_id, AdminSession.ended_at.is_(None))
    return rowcount(session, update(AdminSession).where(*live).values(ended_at=now)
                    .execution_options(synchronize_session=False))
