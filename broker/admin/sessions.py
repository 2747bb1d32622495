"""Admin console sessions, stored in the database so any broker instance serves them.

The browser holds a random 256-bit value; the database holds only its SHA-256 (``AdminSession.id``).
A session is valid while it has not ended (logout), is younger than ``session_lifetime``, has been
used within ``session_idle_timeout``, and its user is still active (offboarding ends the console too).
Roles are fixed at sign-in from the IdP's groups; a changed group takes effect at the next sign-in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from broker.config import AdminSettings
from broker.storage import users
from broker.storage.enums import UserStatus
from broker.storage.models import AdminSession
from broker.storage.users import Account

ADMIN, SECURITY, AUDITOR = "admin", "security", "auditor"
ROLES = (ADMIN, SECURITY, AUDITOR)
TOUCH_EVERY = dt.timedelta(seconds=60)  # last_seen_at is written at most this often per session

# What each permission needs: any one of these roles.
VIEW = frozenset(ROLES)
MANAGE = frozenset({ADMIN})  # servers, policy, clients, keys
OFFBOARD = frozenset({ADMIN, SECURITY})  # users: offboard, restore


def roles_for(idp_id: str, groups: Iterable[str], settings: AdminSettings) -> list[str]:
    """The console roles a user's groups at ``idp_id`` give, strongest first; empty means no console. Only the
    IdPs in ``admin.idps`` (when given) speak for console roles."""
    if settings.idps and idp_id not in settings.idps:
        return []
    held = set(groups)
    mapping = ((ADMIN, settings.admin_groups), (SECURITY, settings.security_groups),
               (AUDITOR, settings.auditor_groups))
    return [role for role, names in mapping if held & set(names)]


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class ConsoleUser:
    """A verified console session: who, with which roles, and the CSRF token their forms carry."""

    session_id: str
    user_id: str
    email: str
    roles: tuple[str, ...]
    csrf_token: str

    def can(self, permission: frozenset[str]) -> bool:
        return bool(permission & set(self.roles))

    @property
    def actor(self) -> str:
        return f"console:{self.email or self.user_id}"


def start(session: Session, user: Account, idp_id: str, roles: list[str], settings: AdminSettings,
          now: dt.datetime) -> str:
    """Create a session; return the cookie value (shown once, stored only hashed)."""
    cookie = secrets.token_urlsafe(32)
    session.add(AdminSession(id=_hash(cookie), user_id=user.id, idp_id=idp_id, email=user.email or "",
                             roles=list(roles), csrf_secret=secrets.token_urlsafe(32), created_at=now,
                             last_seen_at=now, expires_at=now + dt.timedelta(seconds=settings.session_lifetime)))
    session.flush()
    return cookie


def resume(session: Session, cookie: str | None, settings: AdminSettings, now: dt.datetime) -> ConsoleUser | None:
    """The session behind ``cookie`` if it is still valid (and mark it used); else None."""
    if not cookie or len(cookie) > 200:
        return None
    row = users.console_session(session, _hash(cookie))
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    if row.last_seen_at + dt.timedelta(seconds=settings.session_idle_timeout) <= now:
        return None
    user = users.standing(session, row.user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return ConsoleUser(row.id, row.user_id, row.email, tuple(row.roles), row.csrf_secret)


def csrf_ok(console: ConsoleUser, submitted: str | None) -> bool:
    """Synchronizer-token check: the form's token must be this session's."""
    return bool(submitted) and hmac.compare_digest(str(submitted).encode(), console.csrf_token.encode())


def end(session: Session, session_id: str, now: dt.datetime) -> None:
    users.end_console_session(session, session_id, now)


def end_all_for(session: Session, user_id: str, now: dt.datetime) -> int:
    """End every console session of a user (offboarding does it too: ``lifecycle.offboarding``)."""
    return users.end_console_sessions(session, user_id, now)
