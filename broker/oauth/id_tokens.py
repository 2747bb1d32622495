"""ID tokens the broker issues to its own clients (OIDC Core §2), and their verification.

``issue`` signs the claims of OIDC Core §2 for the broker user (the same ``sub`` the access tokens
carry), with ``at_hash`` (§3.1.3.6) and the user claims the OIDC scopes release (§5.4).
``verify`` checks an ID token presented back to the broker (a token-exchange ``subject_token``):
only the broker's own published keys, only their algorithm, then every claim check on its own line.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

import jwt
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.keys.ring import ActiveKey, KeyRing
from broker.oauth import cutoff, oidc_claims
from broker.storage.models import User
from broker.storage.users import Account

ID_TOKEN_TYP = "JWT"  # RFC 8725 §3.11: not at+jwt, so an ID token is never taken for an access token
# OIDC Core §3.1.3.6: at_hash uses the hash of the JWS alg; the key ring signs with these
_HASHES = {"ES256": hashlib.sha256, "RS256": hashlib.sha256}


class IdTokenRejected(Exception):
    """An ID token failed a check; ``description`` names the check and is safe to show the client."""

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


def at_hash(access_token: str, alg: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left half of the hash of the access token's ASCII bytes."""
    digest = _HASHES[alg](access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


class IdTokens:
    def __init__(self, settings: Settings, keyring: KeyRing):
        self.issuer = settings.issuer
        self.lifetime = settings.tokens.id_token_lifetime
        self.clock_skew = settings.tokens.clock_skew
        self.keyring = keyring

    def issue(self, session: Session, *, user: User | Account, client_id: str, oidc_scopes: frozenset[str],
              nonce: str | None, auth_time: dt.datetime | None, acr: str | None, access_token: str | None,
              now: dt.datetime) -> str:
        """An ID token for ``client_id`` about ``user``; the caller checked the user may still sign in."""
        return self.sign(self.keyring.active(session, now), user=user, client_id=client_id,
                         user_claims=oidc_claims.user_claims(session, user, oidc_scopes), nonce=nonce,
                         auth_time=auth_time, acr=acr, access_token=access_token, now=now)

    def sign(self, key: ActiveKey, *, user: User | Account, client_id: str, user_claims: dict[str, Any],
             nonce: str | None, auth_time: dt.datetime | None, acr: str | None, access_token: str | None,
             now: dt.datetime) -> str:
        """``issue`` with the claims about the user and the signing key at hand."""
        iat = cutoff.issued_at(now, user.not_before)  # a subject token for exchange: never before a revocation
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": user.id, "aud": client_id, "azp": client_id,  # OIDC Core §2
            "iat": iat, "exp": iat + self.lifetime,
        }
        if auth_time is not None:
            claims["auth_time"] = int(auth_time.timestamp())
        if acr:
            claims["acr"] = acr
        if nonce is not None:
            claims["nonce"] = nonce  # OIDC Core §3.1.2.1: echoed unmodified, only when the request had one
        claims |= user_claims
        if access_token is not None:
            claims["at_hash"] = at_hash(access_token, key.algorithm)  # OIDC Core §3.1.3.6
        return key.sign(claims, typ=ID_TOKEN_TYP)

    def verify(self, session: Session, token: str, *, client_id: str, now: dt.datetime,
               jwks_grace: dt.timedelta) -> dict[str, Any]:
        """The claims of an ID token this broker issued to ``client_id``, or ``IdTokenRejected``."""
        return self.verify_with(self.keyring.jwks(session, jwks_grace, now)["keys"], token, client_id=client_id,
                                now=now)

    def verify_with(self, published: list[dict[str, Any]], token: str, *, client_id: str,
                    now: dt.datetime) -> dict[str, Any]:
        """``verify`` against the broker's published keys (``published``, as in its JWKS)."""
        unverified_id_token = token
        jwk = _key_for(published, unverified_id_token)
        signed = _signed_claims(unverified_id_token, jwk)
        self._check_claims(signed, client_id, int(now.timestamp()))
        return signed

    def _check_claims(self, claims: dict[str, Any], client_id: str, now: int) -> None:
        if claims.get("iss") != self.issuer:
            raise IdTokenRejected("the ID token was issued by another issuer")  # OIDC Core §3.1.3.7 item 2
        _check_audience(claims, client_id)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise IdTokenRejected("the ID token has no subject")  # OIDC Core §2: sub is required
        exp, iat = _integer(claims, "exp"), _integer(claims, "iat")  # OIDC Core §2: both required
        if exp <= now - self.clock_skew:
            raise IdTokenRejected("the ID token has expired")  # OIDC Core §3.1.3.7 item 9
        if iat > now + self.clock_skew:
            raise IdTokenRejected("the ID token was issued in the future")  # OIDC Core §3.1.3.7 item 10


def _key_for(published: list[dict[str, Any]], unverified_id_token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(unverified_id_token)
    except jwt.PyJWTError:
        raise IdTokenRejected("the ID token is not a signed JWT") from None
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() != ID_TOKEN_TYP.lower()):
        raise IdTokenRejected("the ID token is typed as another kind of token")  # RFC 8725 §3.11
    keys = {k["kid"]: k for k in published}
    jwk = keys.get(header.get("kid")) if isinstance(header.get("kid"), str) else None
    if jwk is None:
        raise IdTokenRejected("the ID token is not signed by a key of this broker")  # only our published keys
    if header.get("alg") != jwk["alg"] or jwk["alg"] not in _HASHES:
        # RFC 8725 §3.1: only the key's own asymmetric algorithm; never none, never HS* keyed with it
        raise IdTokenRejected("the ID token algorithm is not the key's")
    return jwk


def _signed_claims(unverified_id_token: str, jwk: dict[str, Any]) -> dict[str, Any]:
    """The payload once the signature holds; no claim is checked yet (times are checked against ``now``)."""
    try:
        claims = jwt.decode(unverified_id_token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]],
                            options={"verify_aud": False, "verify_iss": False, "verify_exp": False,
                                     "verify_iat": False, "verify_nbf": False})
    except jwt.PyJWTError:
        raise IdTokenRejected("the ID token signature is invalid") from None  # OIDC Core §3.1.3.7 item 6
    if not isinstance(claims, dict):
        raise IdTokenRejected("the ID token claims are not a JSON object")
    return claims


def _check_audience(claims: dict[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise IdTokenRejected("the ID token audience is malformed")  # RFC 7519 §4.1.3
    if client_id not in audiences:
        raise IdTokenRejected("the ID token was issued to another client")  # OIDC Core §3.1.3.7 item 3
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise IdTokenRejected("the ID token has several audiences and another authorized party")  # items 4-5
    if "azp" in claims and claims["azp"] != client_id:
        raise IdTokenRejected("the ID token was issued to another authorized party")  # item 5


def _integer(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise IdTokenRejected(f"the ID token {name} is missing or not an integer")  # RFC 7519 §2 NumericDate
    return value
