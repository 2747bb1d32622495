"""Whether a token the broker issued still counts: its signature checked once, its standing read every time.

Shared by introspection (the hot lane), the admin API's bearer check and UserInfo (the cold lane): an
access token is active only while its signature, issuer and expiry hold, its ``jti`` is not revoked, its
client is active, its refresh-token family is live, its user is active and not revoked since it was
issued (``oauth.cutoff``), and its audience is still served.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

import jwt

from broker.federation.jwks import key_object
from broker.oauth import cutoff, jws, secrets
from broker.storage.enums import ClientStatus, UserStatus
from broker.storage.grants import FamilyRow, TokenStanding
from broker.storage.users import Standing

ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 §2.1
_REQUIRED = {"iss": str, "sub": str, "aud": str, "client_id": str, "scope": str, "jti": str, "iat": int, "exp": int}
_OPTIONAL = {"sid": str, "email": str, "acr": str, "auth_time": int}


class VerifiedAccessTokens:
    """Claims of access tokens whose signature and issuer already verified, by the token's SHA-256.

    A resource server that introspects asks about the same token on every call it serves, and checking
    an ES256 signature costs more than all of the database reads that follow. An entry counts only while
    the key that signed it is still published with the same algorithm and the token has not expired; what
    can change (revocation, the user, the client, the server) is read from the database on every call
    regardless. Bounded, oldest out first; shared by the worker's threads.
    """

    def __init__(self, size: int = 4096):
        self.size = size
        self._entries: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, keys: Mapping[str, Any], now: dt.datetime) -> dict[str, Any] | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        kid, alg, claims = entry
        jwk = keys.get(kid)
        if jwk is None or jwk["alg"] != alg or claims["exp"] <= now.timestamp():
            return None
        return dict(claims)  # a copy: no caller can change what the next request reads

    def put(self, digest: str, kid: str, alg: str, claims: dict[str, Any]) -> None:
        with self._lock:
            if digest not in self._entries and len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
            self._entries[digest] = (kid, alg, claims)


def verify_signed(published: list[dict[str, Any]], issuer: str, cache: VerifiedAccessTokens,
                  unverified_token: str, now: dt.datetime) -> dict[str, Any] | None:
    """Claims of an access token signed by one of ``published`` (the JWKS) and unexpired; None otherwise."""
    try:
        header = jws.unverified_header(unverified_token)
    except jws.MalformedJws:
        return None
    if str(header.get("typ", "")).lower() != ACCESS_TOKEN_TYP:  # RFC 9068 §4: typ must be at+jwt
        return None
    kid = header.get("kid")
    if not isinstance(kid, str):
        return None
    keys = {k["kid"]: k for k in published}
    jwk = keys.get(kid)
    if jwk is None or header.get("alg") != jwk["alg"]:  # only our published keys, only their algorithm
        return None
    digest = secrets.digest(unverified_token)
    cached = cache.get(digest, keys, now)
    if cached is not None:
        return cached
    try:  # iat may be up to a second ahead of the clock (oauth.cutoff.issued_at); exp decides below
        claims = jwt.decode(unverified_token, key_object(jwk, jwk["alg"]), algorithms=[jwk["alg"]],
                            issuer=issuer, leeway=0,
                            options={"verify_aud": False, "verify_iat": False,
                                     "require": ["exp", "iat", "jti", "sub"]})
    except jwt.PyJWTError:
        return None
    if not well_typed(claims):  # signed by our key, yet not shaped as we sign: never trusted
        return None
    if claims["exp"] <= now.timestamp():  # the request's clock decides, as it does for a cached token
        return None
    cache.put(digest, jwk["kid"], jwk["alg"], claims)
    return claims


def well_typed(claims: Any) -> bool:
    """Whether every claim the broker reads has the JSON type the broker signs it with (no bool for int)."""
    if not isinstance(claims, dict):
        return False
    for name, kind in (*_REQUIRED.items(), *_OPTIONAL.items()):
        if name in _OPTIONAL and name not in claims:
            continue
        value = claims.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            return False
    return True


def user_of(claims: Mapping[str, Any]) -> str | None:
    """The user an access token speaks for. Every token a user holds, with a refresh-token family or without
    (an ID-JAG grant's), names them; only a client-credentials token has the client itself as its subject."""
    return str(claims["sub"]) if claims["sub"] != claims.get("client_id") else None


def standing_allows(claims: Mapping[str, Any], standing: TokenStanding) -> bool:
    """Whether what can change about an access token since it was signed still lets it count."""
    if standing.revoked_id is not None or standing.client_status != ClientStatus.ACTIVE:
        return False
    if claims.get("sid") is not None and standing.family != "live":
        return False
    if user_of(claims) is not None and (standing.user_status != UserStatus.ACTIVE
                                        or cutoff.predates(claims["iat"], standing.user_not_before)):
        return False
    return True


def family_live(family: FamilyRow, current: bool, user: Standing | None, now: dt.datetime) -> bool:
    """Whether a refresh token (the current one of ``family``, or a rotated one) counts: its family live and
    unexpired, its user active and not revoked since the family was made."""
    live = current and family.revoked_at is None and now < family.expires_at
    return live and user is not None and user.status == UserStatus.ACTIVE and (
        user.not_before is None or family.created_at >= user.not_before)
