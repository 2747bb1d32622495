"""ID token validation (OIDC Core §3.1.3.7), one check per line, shared by every connector.

The token moves through three names, each a promise about what has been checked:

- ``unverified_id_token`` (str): straight from the token endpoint; only its header is read,
  to pick an allowed algorithm and a key.
- ``SignedClaims``: the signature verified with a key from the IdP's JWKS; claims not yet checked.
- ``VerifiedClaims``: every claim check passed; the only form that may become an ``Identity``.

Every failure raises ``InvalidIdToken`` whose description names the check (no token content).
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from typing import Any, NewType

import jwt

from broker.federation.errors import InvalidIdToken
from broker.federation.http import parse_json

# RFC 8725 §3.1-3.2: asymmetric algorithms only; never "none", never HS* (a JWKS public key
# must not turn into an HMAC secret). Intersected with what the IdP says it signs with.
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                "ES256", "ES384", "ES512", "EdDSA"})
DEFAULT_ALGORITHMS = ("RS256",)  # OIDC Discovery §3: RS256 is the default, always supported
MAX_SUBJECT_LENGTH = 255  # OIDC Core §2: sub MUST NOT exceed 255 ASCII characters
# RFC 8725 §3.11: an explicitly typed token of another kind (at+jwt, logout+jwt, ...) is not an ID token
_ID_TOKEN_TYPES = frozenset({"jwt", "application/jwt"})

SignedClaims = NewType("SignedClaims", dict[str, Any])
VerifiedClaims = NewType("VerifiedClaims", dict[str, Any])


@dataclass(frozen=True)
class UnverifiedHeader:
    """The JOSE header's ``alg`` (already in the allow-list) and ``kid``; nothing else is trusted."""

    alg: str
    kid: str | None


@dataclass(frozen=True)
class Expected:
    """What this login's ID token must say."""

    issuer: str
    client_id: str
    nonce: str
    now: float
    skew: int


def read_header(unverified_id_token: object, algorithms: frozenset[str]) -> UnverifiedHeader:
    """Parse the header and refuse every algorithm outside ``algorithms`` before touching a key."""
    if not isinstance(unverified_id_token, str) or unverified_id_token.count(".") != 2:
        # §3.1.3.7 item 1: we register for no ID token encryption, so anything but a JWS is refused
        raise InvalidIdToken("the ID token is not a signed JWT")
    try:
        header = jwt.get_unverified_header(unverified_id_token)
    except jwt.PyJWTError:
        raise InvalidIdToken("the ID token header is malformed") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidIdToken("the ID token algorithm is not allowed")  # §3.1.3.7 items 6-8, RFC 8725 §3.1
    if "crit" in header:
        raise InvalidIdToken("the ID token has critical header extensions")  # RFC 7515 §4.1.11: none understood
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ID_TOKEN_TYPES):
        raise InvalidIdToken("the ID token is typed as another kind of token")  # RFC 8725 §3.11
    return UnverifiedHeader(alg=alg, kid=header.get("kid"))


class BadSignature(InvalidIdToken):
    """The signature does not verify with the key used (the IdP may have re-keyed under the same ``kid``)."""


def verify_signature(unverified_id_token: str, key: Any, header: UnverifiedHeader) -> SignedClaims:
    """§3.1.3.7 item 6: the signature, with ``key`` from the IdP's JWKS and the checked ``alg``."""
    try:
        signed = jwt.PyJWS().decode_complete(unverified_id_token, key, algorithms=[header.alg])
    except jwt.InvalidSignatureError:
        raise BadSignature("the ID token signature is invalid") from None
    except jwt.PyJWTError:
        raise InvalidIdToken("the ID token signature is invalid") from None
    claims = parse_json(signed["payload"])
    if not isinstance(claims, dict):
        raise InvalidIdToken("the ID token claims are not a JSON object")  # RFC 7519 §7.2 step 10
    return SignedClaims(claims)


def check_claims(claims: SignedClaims, expected: Expected) -> VerifiedClaims:
    """Every claim check of §3.1.3.7 that applies to a code-flow login without max_age or acr."""
    check_issuer(claims, expected.issuer)
    check_audience(claims, expected.client_id)
    check_times(claims, expected.now, expected.skew)
    check_nonce(claims, expected.nonce)
    check_subject(claims)
    return VerifiedClaims(claims)


def check_issuer(claims: SignedClaims, issuer: str) -> None:
    if claims.get("iss") != issuer:
        raise InvalidIdToken("the ID token issuer is not the configured issuer")  # item 2: exact match


def check_audience(claims: SignedClaims, client_id: str) -> None:
    audiences = _audiences(claims.get("aud"))
    if client_id not in audiences:
        raise InvalidIdToken("the ID token audience does not include this client")  # item 3
    if len(audiences) > 1 and claims.get("azp") != client_id:
        # items 3-4: other audiences are trusted only when this client is the authorized party
        raise InvalidIdToken("the ID token has several audiences but this client is not its azp")
    if "azp" in claims and claims["azp"] != client_id:
        raise InvalidIdToken("the ID token was issued to another authorized party")  # item 5


def check_times(claims: SignedClaims, now: float, skew: int) -> None:
    expires_at = _numeric_date(claims, "exp")  # OIDC Core §2: exp is required
    issued_at = _numeric_date(claims, "iat")  # OIDC Core §2: iat is required
    if now >= expires_at + skew:
        raise InvalidIdToken("the ID token has expired")  # item 9
    if issued_at > now + skew:
        raise InvalidIdToken("the ID token was issued in the future")  # item 10
    if "nbf" in claims and _numeric_date(claims, "nbf") > now + skew:
        raise InvalidIdToken("the ID token is not valid yet")  # RFC 7519 §4.1.5


def check_nonce(claims: SignedClaims, nonce: str) -> None:
    unverified_nonce = claims.get("nonce")
    if not isinstance(unverified_nonce, str):
        raise InvalidIdToken("the ID token carries no nonce")  # item 11: we always send one
    if not hmac.compare_digest(unverified_nonce.encode(), nonce.encode()):
        raise InvalidIdToken("the ID token nonce does not match this login")  # item 11, constant time


def check_subject(claims: SignedClaims) -> None:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidIdToken("the ID token has no subject")  # OIDC Core §2: sub is required
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidIdToken("the ID token subject is too long")  # OIDC Core §2: at most 255 characters


def allowed_algorithms(advertised: object) -> frozenset[str]:
    """§3.1.3.7 item 7: what the IdP says it signs with (RS256 when silent), within our allow-list."""
    if not isinstance(advertised, list):
        advertised = list(DEFAULT_ALGORITHMS)
    return ALLOWED_ALGORITHMS.intersection(a for a in advertised if isinstance(a, str))


def _audiences(aud: object) -> list[str]:
    if isinstance(aud, str):
        return [aud]  # RFC 7519 §4.1.3: a single audience may be a string
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return aud
    raise InvalidIdToken("the ID token audience is malformed")


def _numeric_date(claims: SignedClaims, name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidIdToken(f"the ID token {name} is missing or not a NumericDate")  # RFC 7519 §2
    return value
