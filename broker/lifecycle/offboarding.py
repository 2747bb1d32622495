"""Revoke a user everywhere, and restore them.

``revoke_user`` in one transaction: the user is marked offboarded; every live refresh-token family
is revoked; ``not_before`` is set, so every access token issued earlier introspects inactive and
every grant refuses the user; a revocation record feeds MCP servers that verify tokens locally;
an audit event says who did it and why; the user's stored upstream refresh tokens leave their identities
for the revocation queue, which ``broker.lifecycle.upstream_revocation`` works off outside any
transaction (RFC 7009 at the IdP, when it offers an endpoint). It is idempotent. ``restore_user`` lets the user sign in
again; tokens from before the revocation stay dead (``not_before`` is kept).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from broker import audit
from broker.audit import Outcome
from broker.storage import upstream_revocations, user_grants, users
from broker.storage.enums import SignInStatus, UserStatus
from broker.storage.models import User
from broker.storage.users import UserRow

# The sign-ins an offboarding fails: past the IdP, so the user is known, and not finished yet.
USER_KNOWN = (SignInStatus.CALLBACK, SignInStatus.CONSENT, SignInStatus.DECIDING)


class UnknownUser(LookupError):
    pass


@dataclass(frozen=True)
class Offboarded:
    user_id: str
    families_revoked: int
    already_offboarded: bool
    not_before: dt.datetime


def revoke_user(session: Session, user_id: str, *, reason: str, actor: str, now: dt.datetime,
                source: str = "admin") -> Offboarded:
    """End the user's access on every instance the moment the caller commits."""
    user = _changing(session, user_id)
    already = user.status == UserStatus.OFFBOARDED
    user.status, user.updated_at = UserStatus.OFFBOARDED, now
    if not already:
        user.offboarded_at, user.offboard_reason = now, reason
    user.not_before = now  # access tokens with an earlier iat are dead (introspection, refresh)
    families = user_grants.revoke_families(session, user.id, f"user offboarded: {reason}", now)
    user_grants.fail_sign_ins(session, user.id, USER_KNOWN)
    user_grants.record_revocation(session, user.id, reason=reason, actor=actor, now=now)
    upstream = upstream_revocations.take_refresh_tokens(session, user.id, now)  # revoked at the IdP after commit
    consoles = users.end_console_sessions(session, user.id, now)  # an admin's console too, whoever offboards
    audit.record(session, "user.offboarded", actor=actor, user_id=user.id, outcome=Outcome.REVOKED,
                 data={"reason": reason, "source": source, "families_revoked": families,
                       "already_offboarded": already, "upstream_refresh_tokens": upstream,
                       "console_sessions_ended": consoles})
    session.flush()
    return Offboarded(user.id, families, already, now)


def revoke_sessions(session: Session, user_id: str, *, reason: str, actor: str, now: dt.datetime,
                    source: str) -> int:
    """End every session and token of a user who stays allowed to sign in again (CAEP, Universal Logout).

    Refresh-token families and admin console sessions are ended and ``not_before`` moves to now, so access
    tokens die too and the user must authenticate at the IdP again before new tokens are issued. Returns
    families revoked.
    """
    user = _changing(session, user_id)
    user.not_before, user.updated_at = now, now
    families = user_grants.revoke_families(session, user.id, f"sessions revoked: {reason}", now)
    user_grants.record_revocation(session, user.id, reason=reason, actor=actor, now=now)
    consoles = users.end_console_sessions(session, user.id, now)  # the console is a session too
    audit.record(session, "user.sessions_revoked", actor=actor, user_id=user.id, outcome=Outcome.REVOKED,
                 data={"reason": reason, "source": source, "families_revoked": families,
                       "console_sessions_ended": consoles})
    session.flush()
    return families


def restore_user(session: Session, user_id: str, *, reason: str, actor: str, now: dt.datetime) -> bool:
    """Let an offboarded user sign in again; False if they were not offboarded."""
    user = _changing(session, user_id)
    if user.status != UserStatus.OFFBOARDED:
        return False
    user.status, user.updated_at = UserStatus.ACTIVE, now
    audit.record(session, "user.restored", actor=actor, user_id=user.id, data={"reason": reason})
    return True


def _changing(session: Session, user_id: str) -> User:
    """The user, to change in this transaction (the caller's own copy of it, if it holds one)."""
    user = users.get(session, user_id)
    if user is None:
        raise UnknownUser(f"no user {user_id!r}")
    return user


@dataclass(frozen=True)
class Candidate:
    """One user a reference matches, as an operator needs to tell them apart."""

    id: str
    email: str | None
    display_name: str
    status: str
    identities: tuple[str, ...]  # IDP:SUBJECT
    last_login_at: dt.datetime | None

    def describe(self) -> str:
        seen = self.last_login_at.isoformat(timespec="seconds") if self.last_login_at else "never"
        return (f"{self.id} ({self.display_name or '-'}, {self.status}, {', '.join(self.identities) or 'no identity'}"
                f", last sign-in {seen})")


class AmbiguousUser(UnknownUser):
    """A reference (an email) matching several users; ``candidates`` tells them apart."""

    def __init__(self, reference: str, candidates: list[Candidate]):
        self.candidates = candidates
        super().__init__(f"{reference!r} matches {len(candidates)} users: "
                         + "; ".join(c.describe() for c in candidates)
                         + ". Name one by id or IDP:SUBJECT, narrow with the IdP, or act on every match")


def find_users(session: Session, reference: str, idp: str | None = None) -> list[UserRow]:
    """Every user ``reference`` names (a user id, an email their IdP vouched for, or ``IDP:SUBJECT``), only
    those with an identity at ``idp`` when it is given; ``UnknownUser`` when none."""
    user = users.row(session, reference)
    matches = [user] if user is not None else users.with_email(session, reference)
    if not matches:
        by_identity = _by_identity(session, reference)
        matches = [by_identity] if by_identity is not None else []
    if idp is not None:
        matches = [u for u in matches if users.has_identity_at(session, u.id, idp)]
    if not matches:
        raise UnknownUser(f"no user {reference!r}" + (f" with an identity at {idp!r}" if idp else ""))
    return matches


def find_user(session: Session, reference: str, idp: str | None = None) -> UserRow:
    """The one user ``reference`` names (``find_users``); ``AmbiguousUser`` listing them when several."""
    matches = find_users(session, reference, idp)
    if len(matches) > 1:
        raise AmbiguousUser(reference, candidates(session, matches))
    return matches[0]


def to_offboard(session: Session, reference: str, *, idp: str | None = None,
                every_match: bool = False) -> list[UserRow]:
    """Whom a revocation of ``reference`` ends: every match with ``every_match``; otherwise the one match, or
    the one not offboarded yet (the others are cut off already); ``AmbiguousUser`` when that leaves several."""
    matches = find_users(session, reference, idp)
    if every_match or len(matches) == 1:
        return matches
    active = [u for u in matches if u.status != UserStatus.OFFBOARDED]
    if len(active) == 1:
        return active
    raise AmbiguousUser(reference, candidates(session, matches))


def candidates(session: Session, matches: list[UserRow]) -> list[Candidate]:
    return [Candidate(u.id, u.email, u.display_name, u.status,
                      tuple(f"{i.idp_id}:{i.subject}" for i in users.identities_of(session, u.id)), u.last_login_at)
            for u in matches]


def _by_identity(session: Session, reference: str) -> UserRow | None:
    idp_id, _, subject = reference.partition(":")
    record = users.identity(session, idp_id, subject) if subject else None
    return None if record is None else users.row(session, record.user_id)
