"""Authorization codes: 256-bit random, stored as digests, redeemed once (RFC 6749 §4.1.2).

Redemption is one conditional UPDATE, so of any number of concurrent redemptions on any
number of instances exactly one wins. A code presented again revokes what it produced.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from broker import audit
from broker.oauth import secrets
from broker.oauth.errors import InvalidGrantError
from broker.storage import grants


def issue(session: Session, *, client_id: str, user_id: str, redirect_uri: str, resource: str, scope: str,
          code_challenge: str, nonce: str | None, auth_time: dt.datetime | None, acr: str | None,
          now: dt.datetime, lifetime: int, oidc_scope: str | None = None) -> str:
    code = secrets.new_token()
    grants.add_code(session, code_hash=secrets.digest(code), client_id=client_id, user_id=user_id,
                    redirect_uri=redirect_uri, resource=resource, scope=scope, code_challenge=code_challenge,
                    code_challenge_method="S256", nonce=nonce, auth_time=auth_time, acr=acr, oidc_scope=oidc_scope,
                    created_at=now, expires_at=now + dt.timedelta(seconds=lifetime))
    return code


def resource_of(session: Session, code: str) -> str | None:
    """The resource a code was issued for, without redeeming it; None for an unknown code."""
    row = grants.code(session, secrets.digest(code))
    return None if row is None else row.resource


def redeem(session: Session, code: str, now: dt.datetime) -> Any:
    """Consume ``code`` and return its columns; on any failure raise ``InvalidGrantError`` (RFC 6749 §5.2)."""
    code_hash = secrets.digest(code)
    claimed = grants.claim_code(session, code_hash, now)
    if claimed is not None:
        return claimed
    row = grants.code(session, code_hash)
    if row is None:
        raise InvalidGrantError("unknown authorization code")
    if row.used_at is not None:
        if row.family_id is not None:  # RFC 6749 §4.1.2: revoke what the code produced
            grants.revoke_family(session, row.family_id, "authorization code replayed", now)
        audit.record(session, "authorization_code.replayed", actor=row.client_id, user_id=row.user_id,
                     client_id=row.client_id, outcome="revoked", data={"family_id": row.family_id})
        raise InvalidGrantError("authorization code already used")
    raise InvalidGrantError("authorization code expired")
