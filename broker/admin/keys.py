"""Key rotation as operators trigger it (CLI, console, admin API): one function, one audit event."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from broker import audit
from broker.keys import schedule
from broker.keys.ring import KeyRing
from broker.storage.models import SigningKey


def rotate(session: Session, keyring: KeyRing, delay_seconds: int, actor: str) -> SigningKey:
    """Publish a new key now that signs after ``delay_seconds`` (``keys.activation_delay``, or 0 after a
    compromise)."""
    row = keyring.rotate(session, dt.timedelta(seconds=delay_seconds))
    audit.record(session, "key.rotated", actor=actor,
                 data={"after": {"kid": row.kid, "algorithm": row.algorithm,
                                 "activates_at": row.activates_at.isoformat()}})
    return row


def state(key: SigningKey, now: dt.datetime, grace: dt.timedelta) -> str:
    """How operators see a key: signing, pending, retired (published) or expired."""
    if schedule.is_signing(key, now):
        return "signing"
    if key.retired_at is not None and key.retired_at <= now:
        return "retired (published)" if schedule.is_published(key, now, grace) else "expired"
    return "pending"
