"""Upstream refresh tokens taken at offboarding, waiting for their RFC 7009 revocation at the IdP."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from broker.storage.models import UpstreamIdentity, UpstreamRevocation


class PendingRevocation(NamedTuple):
    id: int
    user_id: str
    idp_id: str
    identity_id: str
    token_encrypted: bytes


def take_refresh_tokens(session: Session, user_id: str, now: dt.datetime) -> int:
    """Move the user's stored upstream refresh tokens to the revocation queue; how many there were."""
    held = select(UpstreamIdentity.user_id, UpstreamIdentity.idp_id, UpstreamIdentity.id,
                  UpstreamIdentity.refresh_token_encrypted).where(
        UpstreamIdentity.user_id == user_id, UpstreamIdentity.refresh_token_encrypted.is_not(None))
    rows = session.execute(held).all()
    if not rows:
        return 0
    session.execute(insert(UpstreamRevocation), [
        {"user_id": r.user_id, "idp_id": r.idp_id, "identity_id": r.id, "token_encrypted": r.refresh_token_encrypted,
         "created_at": now} for r in rows])
    session.execute(update(UpstreamIdentity).where(UpstreamIdentity.id.in_([r.id for r in rows]))
                    .values(refresh_token_encrypted=None).execution_options(synchronize_session=False))
    return len(rows)


def claim(session: Session, limit: int) -> list[PendingRevocation]:
    """Delete up to ``limit`` queued tokens and return them: each is claimed by exactly one caller."""
    table = UpstreamRevocation.__table__
    oldest = list(session.scalars(select(table.c.id).order_by(table.c.id).limit(limit)))
    if not oldest:
        return []  # a read only: an empty queue never takes SQLite's write lock
    statement = (delete(table).where(table.c.id.in_(oldest))
                 .returning(table.c.id, table.c.user_id, table.c.idp_id, table.c.identity_id, table.c.token_encrypted))
    return sorted((PendingRevocation(*row) for row in session.execute(statement)), key=lambda p: p.id)
