"""Key rotation as operators trigger it (CLI, console, admin API) and on schedule: one audit event each."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from broker import audit
from broker.config import Settings
from broker.keys import schedule
from broker.keys.ring import KeyRing, publication
from broker.storage import mcp_servers
from broker.storage.signing_keys import KeyRow

SCHEDULE = "broker:schedule"  # the actor of scheduled rotations in the audit log


def rotate(session: Session, keyring: KeyRing, delay_seconds: int, actor: str) -> KeyRow:
    """Publish a new key now that signs after ``delay_seconds`` (``keys.activation_delay``, or 0 after a
    compromise)."""
    row = keyring.rotate(session, dt.timedelta(seconds=delay_seconds))
    _rotated(session, row, actor)
    return row


def rotate_on_schedule(session: Session, keyring: KeyRing, every_seconds: int, delay_seconds: int,
                       now: dt.datetime | None = None) -> KeyRow | None:
    """``keys.rotate_every``: publish the next key when it is due (``KeyRing.rotate_if_due``)."""
    row = keyring.rotate_if_due(session, dt.timedelta(seconds=every_seconds), dt.timedelta(seconds=delay_seconds),
                                now)
    if row is not None:
        _rotated(session, row, SCHEDULE)
    return row


def _rotated(session: Session, row: KeyRow, actor: str) -> None:
    audit.record(session, "key.rotated", actor=actor,
                 data={"after": {"kid": row.kid, "algorithm": row.algorithm,
                                 "activates_at": row.activates_at.isoformat()}})


def grace(session: Session, settings: Settings) -> dt.timedelta:
    """How long a retired key stays published now (``schedule.Publication``), for ``state``."""
    return publication(settings).grace(mcp_servers.longest_lifetime(session))


def state(key: KeyRow, now: dt.datetime, grace: dt.timedelta) -> str:
    """How operators see a key: signing, pending, retired (published) or expired."""
    if schedule.is_signing(key, now):
        return "signing"
    if key.retired_at is not None and key.retired_at <= now:
        return "retired (published)" if schedule.is_published(key, now, grace) else "expired"
    return "pending"
