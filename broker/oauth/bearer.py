"""Bearer tokens presented to the broker itself (the admin API): who is calling, with which scopes.

The same rules as introspection: a token this broker signed, unexpired, not revoked, its client
still active, its audience exactly the admin API; then the scope the operation needs (RFC 6750 §3.1).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from broker.oauth.introspection import AccessTokenRecord, is_active, verify_own_access_token


class BearerError(Exception):
    """An RFC 6750 error: ``invalid_token`` (401) or ``insufficient_scope`` (403)."""

    def __init__(self, error: str, description: str, status_code: int, scope: str | None = None):
        super().__init__(description)
        self.error, self.description, self.status_code, self.scope = error, description, status_code, scope


@dataclass(frozen=True)
class Caller:
    client_id: str
    subject: str
    scopes: frozenset[str]
    jti: str


@dataclass
class _Check:
    db: Session
    now: dt.datetime
    server_ref: Any


def authenticate(session: Session, server: Any, unverified_token: str | None, audience: str, required_scope: str,
                 now: dt.datetime) -> Caller:
    if not unverified_token:
        raise BearerError("invalid_request", "a bearer token is required", 401, required_scope)
    claims = verify_own_access_token(session, server, unverified_token, now)
    if claims is None or claims.get("aud") != audience:  # RFC 9068 §4: aud must be this API
        raise BearerError("invalid_token", "the access token is not valid for this API", 401, required_scope)
    if not is_active(_Check(session, now, server), AccessTokenRecord(claims)):
        raise BearerError("invalid_token", "the access token was revoked", 401, required_scope)
    scopes = frozenset(str(claims.get("scope", "")).split())
    if required_scope not in scopes:
        raise BearerError("insufficient_scope", f"this operation needs the {required_scope} scope", 403,
                          required_scope)
    return Caller(client_id=claims["client_id"], subject=claims["sub"], scopes=scopes, jti=claims["jti"])
