"""Access tokens (RFC 9068 JWTs) and refresh-token families (rotated on every use).

An access token names exactly one MCP server in ``aud``; its scopes come from the verified
grant and policy, never from request parameters. A refresh-token family is the chain of
refresh tokens one authorization produced: presenting an already-rotated token revokes the
whole family (RFC 9700 §4.14.2), and so does revoking any of its tokens.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from broker.config import Settings
from broker.keys.ring import ActiveKey, KeyRing
from broker.oauth import cutoff
from broker.oauth.errors import InvalidGrantError
from broker.registry.servers import Server
from broker.storage import grants

ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 §2.1


@dataclass(frozen=True)
class AccessTokenFacts:
    """Everything that goes into an access token, decided before it is signed."""

    subject: str
    client_id: str
    server: Server
    scopes: frozenset[str]
    auth_time: dt.datetime | None = None
    acr: str | None = None
    family_id: str | None = None
    email: str | None = None
    not_before: dt.datetime | None = None  # the user's latest revocation: iat never predates it (oauth.cutoff)
    jkt: str | None = None  # the DPoP key the token is bound to (RFC 9449 §6: cnf.jkt); None: a bearer token


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    jti: str
    expires_in: int
    jkt: str | None = None  # DPoP-bound to this key: token_type DPoP

    @property
    def token_type(self) -> str:
        return "Bearer" if self.jkt is None else "DPoP"  # RFC 9449 §5


def scope_string(scopes: Iterable[str]) -> str:
    return " ".join(sorted(scopes))


class AccessTokens:
    def __init__(self, settings: Settings, keyring: KeyRing):
        self.issuer = settings.issuer
        self.default_lifetime = settings.tokens.access_token_lifetime
        self.keyring = keyring

    def issue(self, session: Session, facts: AccessTokenFacts, now: dt.datetime) -> IssuedAccessToken:
        return self.sign(self.keyring.active(session, now), facts, now)

    def sign(self, key: ActiveKey, facts: AccessTokenFacts, now: dt.datetime) -> IssuedAccessToken:
        """The access token ``facts`` describe, signed with ``key`` (the one active at ``now``)."""
        lifetime = facts.server.access_token_lifetime or self.default_lifetime
        iat = cutoff.issued_at(now, facts.not_before)
        jti = str(uuid.uuid4())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": facts.subject, "aud": facts.server.resource,  # RFC 9068 §2.2
            "client_id": facts.client_id, "scope": scope_string(facts.scopes),
            "jti": jti, "iat": iat, "exp": iat + lifetime,
        }
        if facts.auth_time is not None:
            claims["auth_time"] = int(facts.auth_time.timestamp())
        if facts.acr:
            claims["acr"] = facts.acr
        if facts.family_id:
            claims["sid"] = facts.family_id  # the refresh-token family: revoking it kills these tokens too
        if facts.email:
            claims["email"] = facts.email
        if facts.jkt:
            claims["cnf"] = {"jkt": facts.jkt}  # RFC 9449 §6.1
        return IssuedAccessToken(key.sign(claims, typ=ACCESS_TOKEN_TYP), jti, lifetime, facts.jkt)


@dataclass(frozen=True)
class RefreshGrant:
    family: grants.FamilyRow  # as stored: a start or a rotation returns its columns
    token: str


class RefreshTokens:
    """Refresh-token families' lifetimes (``oauth.engine.families`` starts and rotates them)."""

    def __init__(self, settings: Settings):
        self.idle = dt.timedelta(seconds=settings.tokens.refresh_token_idle_lifetime)
        self.absolute = dt.timedelta(seconds=settings.tokens.refresh_token_absolute_lifetime)

    def check_usable(self, family: grants.FamilyRow, client_id: str, now: dt.datetime) -> None:
        """``InvalidGrantError`` unless ``family`` is this client's, unrevoked, unexpired and not idle too long."""
        if family.client_id != client_id:
            raise InvalidGrantError("refresh token was issued to another client")  # RFC 6749 §6
        if family.revoked_at is not None:
            raise InvalidGrantError("refresh token revoked")
        if now >= family.expires_at:
            raise InvalidGrantError("refresh token expired")
        if now >= family.last_used_at + self.idle:
            raise InvalidGrantError("refresh token expired after inactivity")
