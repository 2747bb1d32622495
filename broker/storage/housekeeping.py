"""Purging what has stopped mattering: expired pending sign-ins, codes, single-use JWT ids, the rotated
refresh tokens of long-dead families, and old console sessions.

Tokens, families, revocations, users and audit events are never deleted (they are evidence); these
rows only serve a check whose window has passed. Each pass deletes at most ``batch`` rows per table,
so it never holds locks for long; any instance may run it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from broker.storage.models import (
    AdminSession,
    AuthorizationCode,
    Base,
    PendingAuthorization,
    RefreshTokenFamily,
    RotatedRefreshToken,
    SeenJti,
)

# Kept this long past expiry: a code presented again within a day still revokes what it produced.
GRACE = dt.timedelta(days=1)
SESSION_RETENTION = dt.timedelta(days=7)


def purge_expired(session: Session, now: dt.datetime, batch: int = 1000) -> dict[str, int]:
    """Delete one batch of each kind of expired row; returns how many per table."""
    cutoff = now - GRACE
    return {
        "pending_authorizations": _delete(session, PendingAuthorization, PendingAuthorization.id,
                                          PendingAuthorization.expires_at < cutoff, batch),
        "authorization_codes": _delete(session, AuthorizationCode, AuthorizationCode.code_hash,
                                       AuthorizationCode.expires_at < cutoff, batch),
        "seen_jtis": _delete(session, SeenJti, SeenJti.key_hash, SeenJti.expires_at < now, batch),
        "rotated_refresh_tokens": _delete(
            session, RotatedRefreshToken, RotatedRefreshToken.token_hash,
            RotatedRefreshToken.family_id.in_(select(RefreshTokenFamily.id)
                                              .where(RefreshTokenFamily.expires_at < cutoff)), batch),
        "admin_sessions": _delete(session, AdminSession, AdminSession.id,
                                  AdminSession.expires_at < now - SESSION_RETENTION, batch),
    }


def _delete(session: Session, model: type[Base], key: InstrumentedAttribute[Any], condition: ColumnElement[bool],
            batch: int) -> int:
    ids = list(session.scalars(select(key).where(condition).limit(batch)))
    if not ids:
        return 0
    session.execute(delete(model).where(key.in_(ids)).execution_options(synchronize_session=False))
    return len(ids)
