"""The checks of an RFC 9068 access token that need no key: header and claims. Pure functions.

``check_header`` runs on the unverified header before any key is looked up; ``verify_claims`` on
claims whose signature has been checked. Each check is one line with the rule it enforces; a
failure raises ``TokenRejected`` carrying a short reason that is safe to log.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 §2.1, §4
# Asymmetric JWS algorithms only: a resource server holds public keys, and an HMAC "verified"
# with a public key as its secret is the classic algorithm-confusion forgery (RFC 8725 §2.1, §3.1).
ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512",
                                   "PS256", "PS384", "PS512", "EdDSA"})
DEFAULT_ALGORITHMS = ("ES256", "RS256")
CLOCK_SKEW = 60  # seconds of tolerated clock difference with the broker, both directions


class TokenRejected(Exception):
    """A token failed a check. ``reason`` names the check; it never contains the token."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedClaims:
    """The claims of an access token that passed every check: signature, issuer, audience, time."""

    issuer: str
    subject: str
    audience: str  # this server's resource URI, the one the token was checked against
    client_id: str
    scopes: tuple[str, ...]
    jwt_id: str
    issued_at: int
    expires_at: int
    auth_time: int | None = None
    acr: str | None = None
    sid: str | None = None
    email: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)  # every claim, as signed


def allowed_algorithms(algorithms: Collection[str]) -> frozenset[str]:
    """Validate a configured allow-list: asymmetric algorithms only, never ``none`` or ``HS*``."""
    chosen = frozenset(algorithms)
    if not chosen or not chosen <= ASYMMETRIC_ALGORITHMS:
        raise ValueError(f"algorithms must be a non-empty subset of {sorted(ASYMMETRIC_ALGORITHMS)}; "
                         f"got {sorted(chosen)}")
    return chosen


def check_header(unverified_header: Mapping[str, Any], algorithms: Collection[str]) -> tuple[str, str]:
    """Check the JOSE header before trusting anything in it; return ``(alg, kid)``."""
    typ = unverified_header.get("typ")
    alg = unverified_header.get("alg")
    kid = unverified_header.get("kid")
    # RFC 9068 §4: typ must be at+jwt (or application/at+jwt; media types are case-insensitive),
    # so an ID token or any other JWT from the same issuer is never taken for an access token.
    _require(isinstance(typ, str) and typ.lower() in ACCESS_TOKEN_TYPES, "typ is not at+jwt")
    # RFC 8725 §3.1 / RFC 9068 §4: only algorithms on our allow-list; never none, never HMAC.
    if not (isinstance(alg, str) and alg in algorithms):
        raise TokenRejected("alg not allowed")
    # RFC 9068 §4 / RFC 7515 §4.1.4: the broker names its key; no kid, no key to verify with.
    if not (isinstance(kid, str) and 0 < len(kid) <= 256):
        raise TokenRejected("kid missing")
    # RFC 7515 §4.1.11: an extension we do not understand marked critical must be refused.
    _require("crit" not in unverified_header, "crit header not supported")
    return alg, kid


def verify_claims(unverified_claims: Mapping[str, Any], *, issuer: str, resource: str, now: float,
                  clock_skew: int = CLOCK_SKEW) -> VerifiedClaims:
    """Check the claims of a token whose signature is already verified (RFC 9068 §4).

    ``issuer`` is compared byte for byte; ``resource`` is this server's own resource URI and must
    be (or be in) ``aud``: a token for another server is never accepted, and never passed on.
    """
    c = unverified_claims
    # RFC 9068 §4: iss must be exactly the issuer we trust (RFC 8414 §3.3, no normalisation).
    _require(c.get("iss") == issuer, "iss is not the broker")
    # RFC 9068 §4 / RFC 8707: aud must name this resource server, or the token was minted for another.
    _require(_audience_contains(c.get("aud"), resource), "aud is not this resource")
    exp = _number(c, "exp")
    iat = _number(c, "iat")
    # RFC 9068 §4 / RFC 7519 §4.1.4: expired tokens are refused (small skew for clock drift).
    _require(now < exp + clock_skew, "token expired")
    # RFC 7519 §4.1.6: a token issued in the future is a forged or mis-clocked one.
    _require(iat <= now + clock_skew, "iat in the future")
    # RFC 7519 §4.1.5: not before, when present.
    _require("nbf" not in c or _number(c, "nbf") <= now + clock_skew, "token not yet valid")
    # RFC 9068 §2.2: sub, client_id and jti are required; scope is how the broker grants anything.
    subject = _string(c, "sub")
    client_id = _string(c, "client_id")
    jwt_id = _string(c, "jti")
    scope = c.get("scope")
    if not isinstance(scope, str):
        raise TokenRejected("scope missing")
    # The broker never signs an optional claim of another type: such a token was not made by it as it is.
    _require(all(_optional_string(c, name) is not None for name in ("sid", "email", "acr") if name in c),
             "sid, email or acr is not a string")
    _require("auth_time" not in c or _is_number(c["auth_time"]), "auth_time is not a number")
    return VerifiedClaims(
        issuer=issuer, subject=subject, audience=resource, client_id=client_id,
        scopes=tuple(scope.split()), jwt_id=jwt_id, issued_at=int(iat), expires_at=int(exp),
        auth_time=int(c["auth_time"]) if _is_number(c.get("auth_time")) else None,
        acr=_optional_string(c, "acr"), sid=_optional_string(c, "sid"), email=_optional_string(c, "email"),
        claims=dict(c),
    )


def _audience_contains(aud: Any, resource: str) -> bool:
    if isinstance(aud, str):
        return aud == resource
    return isinstance(aud, list) and resource in aud


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise TokenRejected(reason)


def _is_number(value: object) -> TypeGuard[int | float]:
    # JSON parsers accept NaN and Infinity; an exp of Infinity must not mean "never expires".
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if not _is_number(value):
        raise TokenRejected(f"{name} missing or not a number")
    return float(value)


def _string(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not (isinstance(value, str) and value != ""):
        raise TokenRejected(f"{name} missing")
    return value


def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None
