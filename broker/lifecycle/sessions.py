"""Revoke one session of a user: one refresh-token family, the grant one MCP client holds for one server.

Offboarding (``offboarding``) ends everything a user holds; this ends one thing, say a client on a lost
laptop, and leaves the user's other sessions and their sign-in alone. The family's refresh token stops
working at once on every instance; its access tokens introspect inactive and go into the revocation
feed (``storage.grants.revoke_family``); MCP servers that check tokens only locally accept them until
they expire (minutes).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from broker import audit
from broker.audit import Outcome
from broker.storage import grants, mcp_servers, user_grants
from broker.storage.grants import FamilyRow


class UnknownSession(LookupError):
    """No such family for this user (or it was revoked already)."""


def revoke_session(session: Session, user_id: str, family_id: str, *, reason: str, actor: str, now: dt.datetime,
                   source: str) -> FamilyRow:
    """Revoke the user's family ``family_id`` and record ``user.session_revoked``; ``UnknownSession`` when the
    family is not this user's or is no longer live."""
    family = user_grants.family(session, family_id)
    if family is None or family.user_id != user_id or family.revoked_at is not None:
        raise UnknownSession(f"user {user_id} has no live session {family_id!r}")
    if not grants.revoke_family(session, family_id, f"revoked by an administrator: {reason}", now):
        raise UnknownSession(f"session {family_id!r} was revoked meanwhile")
    server = mcp_servers.by_resource(session, family.resource)
    audit.record(session, "user.session_revoked", actor=actor, user_id=user_id, client_id=family.client_id,
                 server_id=server.id if server else None, outcome=Outcome.REVOKED,
                 data={"family_id": family_id, "reason": reason, "source": source})
    revoked = user_grants.family(session, family_id)
    assert revoked is not None
    return revoked
