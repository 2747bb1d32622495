"""Recording audit events. Values only as ids and hashes: never a token, secret, code or assertion."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from broker.audit import observers
from broker.storage import audit_events
from broker.storage.hot import Tx
from broker.storage.models import utcnow

# Keys that would only ever hold a credential: refused outright, so a careless caller fails loudly in tests.
FORBIDDEN_KEYS = frozenset({"token", "access_token", "refresh_token", "id_token", "code", "client_secret",
                            "secret", "password", "assertion", "client_assertion", "code_verifier"})


def record(session: Session, event_type: str, *, actor: str = "", user_id: str | None = None,
           client_id: str | None = None, server_id: str | None = None, outcome: str = "success",
           data: Mapping[str, Any] | None = None, at: dt.datetime | None = None) -> None:
    """Add one event to the caller's transaction (committed, or not, with the change it describes)."""
    values = _values(event_type, actor, user_id, client_id, server_id, outcome, data, at)
    audit_events.add(session, values)
    observers.note(session, event_type, outcome, client_id, server_id, values["data"])


async def record_hot(tx: Tx, event_type: str, *, actor: str = "", user_id: str | None = None,
                     client_id: str | None = None, server_id: str | None = None, outcome: str = "success",
                     data: Mapping[str, Any] | None = None, at: dt.datetime | None = None) -> None:
    """``record`` in a transaction of the hot lane; listeners hear of the event once it commits."""
    values = _values(event_type, actor, user_id, client_id, server_id, outcome, data, at)
    await audit_events.add_hot(tx, values)
    observers.note_hot(tx, event_type, outcome, client_id, server_id, values["data"])


def _values(event_type: str, actor: str, user_id: str | None, client_id: str | None, server_id: str | None,
            outcome: str, data: Mapping[str, Any] | None, at: dt.datetime | None) -> dict[str, Any]:
    payload = dict(data or {})
    bad = _forbidden(payload)
    if bad:
        raise ValueError(f"audit data must not carry credentials ({', '.join(sorted(bad))})")
    return {"occurred_at": at or utcnow(), "event_type": event_type, "actor": actor[:320], "user_id": user_id,
            "client_id": client_id, "server_id": server_id, "outcome": outcome, "data": payload}


def _forbidden(value: Any) -> set[str]:
    """The forbidden keys of the mappings in ``value``, at any depth (scalars are not looked into)."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        found.update(FORBIDDEN_KEYS.intersection(map(str, value)))
        inner_values: Iterable[Any] = value.values()
    elif isinstance(value, list | tuple):
        inner_values = value
    else:
        return found
    for inner in inner_values:
        if not isinstance(inner, _SCALARS):
            found |= _forbidden(inner)
    return found


_SCALARS = (str, int, float, bool, type(None))  # most values: no keys below (and no ABC check)
