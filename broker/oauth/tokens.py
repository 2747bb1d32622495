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

from broker import audit
from broker.config import Settings
from broker.keys.ring import ActiveKey, KeyRing
from broker.oauth import cutoff, secrets
from broker.oauth.errors import InvalidGrantError
from broker.registry.servers import Server
from broker.storage import grants
from broker.storage.models import RefreshTokenFamily, new_id

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


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    jti: str
    expires_in: int


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
        return IssuedAccessToken(key.sign(claims, typ=ACCESS_TOKEN_TYP), jti, lifetime)


@dataclass(frozen=True)
class RefreshGrant:
    family: Any  # the family's columns as stored (a start or a rotation returns them), not an ORM object
    token: str


class RefreshTokens:
    def __init__(self, settings: Settings):
        self.idle = dt.timedelta(seconds=settings.tokens.refresh_token_idle_lifetime)
        self.absolute = dt.timedelta(seconds=settings.tokens.refresh_token_absolute_lifetime)

    def start(self, session: Session, *, client_id: str, user_id: str, resource: str, scopes: Iterable[str],
              auth_time: dt.datetime | None, acr: str | None, now: dt.datetime,
              oidc_scope: str | None = None) -> RefreshGrant:
        """A new family; ``oidc_scope`` (the code's) makes every refresh carry an ID token too."""
        token = secrets.new_token()
        family = grants.start_family(session, id=new_id(), client_id=client_id, user_id=user_id, resource=resource,
                                     scope=scope_string(scopes), current_hash=secrets.digest(token), generation=0,
                                     auth_time=auth_time, acr=acr, oidc_scope=oidc_scope, created_at=now,
                                     last_used_at=now, expires_at=now + self.absolute)
        return RefreshGrant(family, token)

    def rotate(self, session: Session, presented: str, client_id: str, now: dt.datetime) -> RefreshGrant:
        """Exchange a refresh token for the next one in its family, or raise ``InvalidGrantError``.

        The usual case is one conditional UPDATE ... RETURNING; only when it matches nothing does the
        broker look closer, to tell reuse (which revokes the family) from expiry or a wrong client.
        """
        token = secrets.new_token()
        family = grants.rotate_current(session, secrets.digest(presented), secrets.digest(token), client_id, now,
                                       idle_cutoff=now - self.idle)
        if family is not None:
            return RefreshGrant(family, token)
        family = self.current(session, presented, client_id, now)  # raises, unless it changed under us
        # Another request rotated it in between: two holders of one token (RFC 9700 §4.14.2).
        grants.revoke_family(session, family.id, "refresh token used twice", now)
        _audit_reuse(session, family, "concurrent use")
        raise InvalidGrantError("refresh token was already used")

    def current(self, session: Session, presented: str, client_id: str, now: dt.datetime) -> RefreshTokenFamily:
        """The live family whose current token is ``presented``, without rotating it (a subject token).

        A rotated token is reuse, as at the token endpoint: its family is revoked.
        """
        presented_hash = secrets.digest(presented)
        family = grants.family_by_current(session, presented_hash)
        if family is None:
            self._reject_unknown_or_reused(session, presented_hash, now)
        assert family is not None
        self.check_usable(family, client_id, now)
        return family

    def revoke(self, session: Session, family_id: str, reason: str, now: dt.datetime) -> bool:
        return grants.revoke_family(session, family_id, reason, now)

    def _reject_unknown_or_reused(self, session: Session, presented_hash: str, now: dt.datetime) -> None:
        family = grants.family_by_rotated(session, presented_hash)
        if family is not None:
            grants.revoke_family(session, family.id, "rotated refresh token reused", now)  # RFC 9700 §4.14.2
            _audit_reuse(session, family, "a rotated token was presented")
            raise InvalidGrantError("refresh token was already used")
        raise InvalidGrantError("unknown refresh token")

    def check_usable(self, family: RefreshTokenFamily | grants.FamilyRow, client_id: str, now: dt.datetime) -> None:
        if family.client_id != client_id:
            raise InvalidGrantError("refresh token was issued to another client")  # RFC 6749 §6
        if family.revoked_at is not None:
            raise InvalidGrantError("refresh token revoked")
        if now >= family.expires_at:
            raise InvalidGrantError("refresh token expired")
        if now >= family.last_used_at + self.idle:
            raise InvalidGrantError("refresh token expired after inactivity")


def _audit_reuse(session: Session, family: RefreshTokenFamily, how: str) -> None:
    audit.record(session, "refresh_token.reuse_detected", actor=family.client_id, user_id=family.user_id,
                 client_id=family.client_id, outcome="revoked", data={"family_id": family.id, "how": how})
