"""A user's grants as a whole: ending every refresh-token family and unfinished sign-in of theirs at once, and
the user-wide revocation record the revocation feed carries (offboarding, session revocation)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broker.storage.enums import RevocationKind, SignInStatus
from broker.storage.grants import FamilyRow
from broker.storage.models import PendingAuthorization, RefreshTokenFamily, Revocation
from broker.storage.statements import rowcount

REASON_LENGTH = 200  # refresh_token_families.revoked_reason


_FAMILIES = RefreshTokenFamily.__table__


def family(session: Session, family_id: str) -> FamilyRow | None:
    found = session.execute(select(*_FAMILIES.c).where(_FAMILIES.c.id == family_id)).first()
    return None if found is None else FamilyRow._make(found)


def live_families(session: Session, user_id: str, limit: int) -> list[FamilyRow]:
    """Up to ``limit`` of the user's families that are not revoked, most recently used first."""
    found = session.execute(select(*_FAMILIES.c).where(_FAMILIES.c.user_id == user_id, _FAMILIES.c.revoked_at.is_(None))
                            .order_by(_FAMILIES.c.last_used_at.desc()).limit(limit))
    return [FamilyRow._make(row) for row in found]


def revoke_families(session: Session, user_id: str, reason: str, now: dt.datetime) -> int:
    """Revoke every live family of the user (the user's revocation record covers their tokens); how many."""
    return rowcount(session, update(RefreshTokenFamily)
                    .where(RefreshTokenFamily.user_id == user_id, RefreshTokenFamily.revoked_at.is_(None))
                    .values(revoked_at=now, revoked_reason=reason[:REASON_LENGTH])
                    .execution_options(synchronize_session=False))


def fail_sign_ins(session: Session, user_id: str, statuses: Collection[SignInStatus]) -> int:
    """Fail the user's sign-ins that are in one of ``statuses``; how many."""
    return rowcount(session, update(PendingAuthorization)
                    .where(PendingAuthorization.user_id == user_id, PendingAuthorization.status.in_(statuses))
                    .values(status=SignInStatus.FAILED).execution_options(synchronize_session=False))


def record_revocation(session: Session, user_id: str, *, reason: str, actor: str, now: dt.datetime) -> None:
    """Tokens of the user issued before ``now`` are revoked (the feed's ``user`` record)."""
    session.add(Revocation(kind=RevocationKind.USER, subject=user_id, not_before=now, reason=reason, actor=actor,
                           created_at=now))
    session.flush()
