"""Key rotation as operators trigger it (CLI, console, admin API): one function, one audit event."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from broker import audit
from broker.keys.ring import KeyRing
from broker.storage.models import SigningKey


def rotate(session: Session, keyring: KeyRing, delay: dt.timedelta, actor: str) -> SigningKey:
    row = keyring.rotate(session, delay)
    audit.record(session, "key.rotated", actor=actor,
                 data={"after": {"kid": row.kid, "algorithm": row.algorithm,
                                 "activates_at": row.activates_at.isoformat()}})
    return row
