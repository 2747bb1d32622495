"""Bearer tokens presented to the broker itself (the admin API, UserInfo): who is calling, with which scopes.

The same rules as introspection (``oauth.verification``), in a session of the cold lane: a token this
broker signed, unexpired, not revoked, its client still active, its audience exactly the API; then the
scope the operation needs (RFC 6750 §3.1).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from broker.oauth.verification import standing_allows, user_of, verify_signed
from broker.registry import servers
from broker.storage import grants


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


def authenticate(session: Session, engine: Any, unverified_token: str | None, audience: str, required_scope: str,
                 now: dt.datetime) -> Caller:
    """The caller ``unverified_token`` names, for ``audience`` with ``required_scope``; ``BearerError`` otherwise.
    ``engine``: the token engine (its keys, issuer and verified-token cache)."""
    if not unverified_token:
        raise BearerError("invalid_request", "a bearer token is required", 401, required_scope)
    published = engine.keyring.jwks(session, now=now)["keys"]
    claims = verify_signed(published, engine.issuer, engine.verified_access_tokens, unverified_token, now)
    if claims is None or claims.get("aud") != audience:  # RFC 9068 §4: aud must be this API
        raise BearerError("invalid_token", "the access token is not valid for this API", 401, required_scope)
    if not _active(session, engine.issuer, claims):
        raise BearerError("invalid_token", "the access token was revoked", 401, required_scope)
    scopes = frozenset(str(claims.get("scope", "")).split())
    if required_scope not in scopes:
        raise BearerError("insufficient_scope", f"this operation needs the {required_scope} scope", 403,
                          required_scope)
    return Caller(client_id=claims["client_id"], subject=claims["sub"], scopes=scopes, jti=claims["jti"])


def _active(session: Session, issuer: str, claims: dict[str, Any]) -> bool:
    standing = grants.access_token_standing(session, jti=claims["jti"], client_id=claims["client_id"],
                                            family_id=claims.get("sid"), user_id=user_of(claims))
    if not standing_allows(claims, standing):
        return False
    try:
        servers.resolve(session, claims["aud"], issuer, include_admin_api=True, include_sign_in=True)
    except servers.UnknownResource:
        return False
    return True
