"""The test IdP's JWTs: ID tokens (OIDC Core §2) and access tokens (RFC 9068), ES256.

Signing keys come from a ``KeySource`` (the ``KeyRing`` of purpose ``testidp``); this module
only builds claims, signs with a given key and verifies tokens it issued itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from sqlalchemy.orm import Session

from broker.config import TestIdpUser
from broker.keys.ring import ActiveKey
from broker.testidp.errors import InvalidToken

ALGORITHM = "ES256"
ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 §2.1
ID_TOKEN_TYP = "JWT"
ACCESS_TOKEN_LIFETIME = 300
ID_TOKEN_LIFETIME = 300
CLOCK_SKEW = 60  # also how long past expiry a redeemed code is remembered
# How long a retired key stays in the JWKS: the longest a token it signed stays valid.
KEY_GRACE = dt.timedelta(seconds=max(ACCESS_TOKEN_LIFETIME, ID_TOKEN_LIFETIME) + CLOCK_SKEW)
ACCESS_TOKEN_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"]  # RFC 9068 §2.2


class KeySource(Protocol):
    """What the provider needs of a key ring (``broker.keys.ring.KeyRing`` is one)."""

    def active(self, session: Session, now: dt.datetime | None = None) -> ActiveKey: ...

    def jwks(self, session: Session, grace: dt.timedelta, now: dt.datetime | None = None) -> dict[str, Any]: ...

    def ensure(self, session: Session, now: dt.datetime | None = None) -> object:
        """Create an immediately active key when none signs now (at start-up)."""
        ...


@dataclass(frozen=True)
class Authentication:
    """Who logged in, for which client and scope, and when: what every issued token is about."""

    user: TestIdpUser
    client_id: str
    scope: tuple[str, ...]
    auth_time: int


def user_claims(user: TestIdpUser, scope: tuple[str, ...]) -> dict[str, Any]:
    """Identity claims released for ``scope`` (OIDC Core §5.4), shared by ID token and userinfo.

    ``groups`` is always released: the broker's policy is written in groups, as with an Okta
    authorization server whose groups claim is set to be always included.
    """
    claims: dict[str, Any] = {"sub": user.username, "groups": list(user.groups)}
    if "email" in scope:
        claims |= {"email": user.email, "email_verified": True}
    if "profile" in scope:
        claims["name"] = user.name or user.username
    return claims


def sign_access_token(key: ActiveKey, issuer: str, audience: str, auth: Authentication, now: int) -> str:
    """An RFC 9068 access token for the userinfo endpoint."""
    claims = {"iss": issuer, "sub": auth.user.username, "aud": audience, "client_id": auth.client_id,
              "scope": " ".join(auth.scope), "jti": uuid.uuid4().hex, "iat": now,
              "exp": now + ACCESS_TOKEN_LIFETIME, "auth_time": auth.auth_time}
    return key.sign(claims, typ=ACCESS_TOKEN_TYP)


def sign_id_token(key: ActiveKey, issuer: str, auth: Authentication, now: int, nonce: str | None,
                  access_token: str) -> str:
    """An ID token (OIDC Core §2, §3.1.3.6); ``nonce`` only when the request carried one."""
    claims = {"iss": issuer, **user_claims(auth.user, auth.scope), "aud": auth.client_id,
              "azp": auth.client_id, "iat": now, "exp": now + ID_TOKEN_LIFETIME,
              "auth_time": auth.auth_time, "amr": ["pwd"], "at_hash": at_hash(access_token)}
    if nonce is not None:
        claims["nonce"] = nonce
    return key.sign(claims, typ=ID_TOKEN_TYP)


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: left half of SHA-256 (ES256's hash) of the token, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def verify_own_jwt(unverified_token: str, *, typ: str, jwks: dict[str, Any], issuer: str, audience: str,
                   required: list[str], now: float) -> dict[str, Any]:
    """Claims of a JWT this provider signed; raises ``InvalidToken`` naming the first failed check."""
    header = _unverified_header(unverified_token)
    if header.get("typ") != typ:
        raise InvalidToken(f"the token type is not {typ}")  # RFC 8725 §3.11: explicit typing, no token confusion
    key = _published_key(jwks, header.get("kid"))  # only keys from our own JWKS
    try:
        claims = jwt.decode(
            unverified_token, key,
            algorithms=[ALGORITHM],  # RFC 8725 §3.1: the one algorithm we sign with, never "none"
            issuer=issuer,  # RFC 9068 §4: iss must be exactly ours
            audience=audience,  # RFC 9068 §4: aud must name this endpoint
            options={"require": required, "verify_exp": False, "verify_iat": False, "verify_nbf": False})
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"token rejected: {exc}") from None
    _check_times(claims, now)
    return claims


def _check_times(claims: dict[str, Any], now: float) -> None:
    exp, iat = claims["exp"], claims["iat"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)):
        raise InvalidToken("exp and iat must be integers")  # RFC 7519 §2 NumericDate
    if now >= exp + CLOCK_SKEW:
        raise InvalidToken("token expired")  # RFC 7519 §4.1.4
    if iat > now + CLOCK_SKEW:
        raise InvalidToken("token issued in the future")  # RFC 9068 §4: reject implausible iat


def _unverified_header(unverified_token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(unverified_token)
    except jwt.InvalidTokenError:
        raise InvalidToken("malformed token") from None


def _published_key(jwks: dict[str, Any], kid: Any) -> Any:
    for jwk in jwks.get("keys", []):
        if isinstance(kid, str) and jwk.get("kid") == kid:
            return jwt.PyJWK(jwk, algorithm=ALGORITHM).key
    raise InvalidToken("token signed by an unknown key")
