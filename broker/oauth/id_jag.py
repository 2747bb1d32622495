"""Identity Assertion JWT Authorization Grants (ID-JAG) from trusted IdPs: keys and verification.

draft-ietf-oauth-identity-assertion-authz-grant, as the MCP extension
``io.modelcontextprotocol/enterprise-managed-authorization`` profiles it.

Fetching an IdP's keys and checking the signature are async and happen before the token request's
database transaction (``AssertionKeys.prepare``, called by the web layer; a signature that fails
with the cached key for its ``kid`` fetches the keys once more, rate limited, in case the IdP
re-keyed); the claim checks are synchronous and use only what was prepared, so no HTTP call ever
runs while a database connection is held. Nothing in an assertion is trusted before its signature:
the unverified ``iss`` only chooses the keys, and the signed ``iss`` is checked again.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from broker.config import TrustedAssertionIssuer
from broker.federation.errors import InvalidIdToken, UpstreamError
from broker.federation.idtoken import UnverifiedHeader
from broker.federation.jwks import JwksCache, http_fetcher
from broker.oauth import jws
from broker.oauth.clients import JWT_BEARER, TOKEN_EXCHANGE

__all__ = ["JWT_BEARER", "TOKEN_EXCHANGE"]  # RFC 7523 §2.1 and RFC 8693 §2.1 grant types, re-exported
ID_JAG_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
ID_JAG_PROFILE = "urn:ietf:params:oauth:grant-profile:id-jag"
ID_JAG_TYP = "oauth-id-jag+jwt"
REQUIRED_CLAIMS = ("iss", "sub", "aud", "client_id", "jti", "exp", "iat")
MAX_ASSERTION_BYTES = 16_384
KEYS_TTL = 600.0
KEYS_MIN_REFRESH = 30.0


class AssertionRejected(Exception):
    """The assertion fails a check; ``description`` is safe to show the client (never the assertion)."""

    def __init__(self, description: str, *, unavailable: bool = False):
        super().__init__(description)
        self.description = description
        self.unavailable = unavailable  # the IdP's keys could not be fetched: try again later


@dataclass(frozen=True)
class PreparedKey:
    """The outcome of checking an assertion's signature before the transaction: its signed claims, or why not.

    ``signed_claims`` are the claims of exactly ``assertion`` once its signature verified with the issuer's
    key; nothing in them is checked yet (``verify`` does that).
    """

    issuer: str
    assertion: str = field(default="", repr=False)
    signed_claims: Mapping[str, Any] | None = None
    failure: AssertionRejected | None = None


@dataclass(frozen=True)
class VerifiedAssertion:
    trusted: TrustedAssertionIssuer
    claims: Mapping[str, Any]

    @property
    def subject(self) -> str:
        return str(self.claims["sub"])

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])


def unverified_parts(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, unverified; ``AssertionRejected`` when it is not a compact JWS of JSON objects."""
    if len(assertion) > MAX_ASSERTION_BYTES or assertion.count(".") != 2:
        raise AssertionRejected("the assertion is not a signed JWT")
    try:
        return jws.unverified_parts(assertion)
    except jws.NotJsonObjects:
        raise AssertionRejected("the assertion's header and payload must be JSON objects") from None
    except jws.MalformedJws:
        raise AssertionRejected("the assertion is malformed") from None


class AssertionKeys:
    """The signing keys of every trusted ID-JAG issuer, cached per issuer (``federation.jwks``)."""

    def __init__(self, trusted: list[TrustedAssertionIssuer], http: httpx.AsyncClient,
                 clock: Callable[[], float] = time.time):
        self.trusted = {t.issuer: t for t in trusted}
        self.caches = {t.issuer: JwksCache(http_fetcher(http, t.jwks_uri, t.id, "id_jag_issuer"), idp_id=t.id,
                                           ttl=KEYS_TTL, min_refresh_interval=KEYS_MIN_REFRESH, clock=clock)
                       for t in trusted}

    async def prepare(self, assertion: str | None) -> PreparedKey | None:
        """The assertion's signature checked with its issuer's key, fetched if need be (and fetched again once,
        rate limited, when the cached key for its ``kid`` does not verify); None when it names no trusted issuer."""
        if not assertion:
            return None
        try:
            header, claims = unverified_parts(assertion)
        except AssertionRejected:
            return None
        trusted = self.trusted.get(str(claims.get("iss")))
        if trusted is None:
            return None
        alg = header.get("alg")
        if alg not in trusted.algorithms:  # never none or HS*: only the issuer's configured algorithms
            return PreparedKey(trusted.issuer, failure=AssertionRejected("the signing algorithm is not allowed"))
        try:
            signed = await self.caches[trusted.issuer].verified(
                UnverifiedHeader(alg=alg, kid=header.get("kid")), lambda key: _signed_claims(assertion, key, alg),
                BadSignature)
        except BadSignature as exc:
            return PreparedKey(trusted.issuer, failure=exc)
        except AssertionRejected as exc:
            return PreparedKey(trusted.issuer, failure=exc)
        except InvalidIdToken:
            return PreparedKey(trusted.issuer, failure=AssertionRejected("the assertion is signed with a key its "
                                                                         "issuer does not publish"))
        except UpstreamError:
            return PreparedKey(trusted.issuer, failure=AssertionRejected("the issuer's signing keys could not be "
                                                                         "fetched", unavailable=True))
        return PreparedKey(trusted.issuer, assertion=assertion, signed_claims=signed)


class BadSignature(AssertionRejected):
    """The signature does not verify with the key used (the issuer may have re-keyed under the same ``kid``)."""


def _signed_claims(assertion: str, key: Any, alg: str) -> dict[str, Any]:
    """The claims of ``assertion`` once its signature verifies with ``key`` (RFC 7515 §5.2); none checked yet."""
    try:
        payload = jwt.PyJWS().decode_complete(assertion, key, algorithms=[alg])["payload"]
    except jwt.InvalidSignatureError:
        raise BadSignature("the assertion's signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise AssertionRejected(f"the assertion was refused ({type(exc).__name__})") from None
    try:
        claims = json.loads(payload)
    except ValueError:
        raise AssertionRejected("the assertion's payload must be a JSON object") from None
    if not isinstance(claims, dict):
        raise AssertionRejected("the assertion's payload must be a JSON object")
    return claims


def verify(assertion: str, *, prepared: PreparedKey | None, trusted: Mapping[str, TrustedAssertionIssuer],
           own_issuer: str, client_id: str, skew: int, max_lifetime: int, now: dt.datetime) -> VerifiedAssertion:
    """Every check of the ID-JAG draft's §5 that needs only the assertion; raises ``AssertionRejected``."""
    header, unverified = unverified_parts(assertion)
    if str(header.get("typ", "")).lower() not in (ID_JAG_TYP, f"application/{ID_JAG_TYP}"):
        raise AssertionRejected(f"the assertion's typ is not {ID_JAG_TYP}")  # RFC 8725 §3.11: explicit typing
    if "crit" in header or "cty" in header:
        raise AssertionRejected("nested or critical-extension assertions are not accepted")  # RFC 7515 §4.1.11
    issuer = unverified.get("iss")
    if issuer == own_issuer:
        raise AssertionRejected("the broker does not redeem ID-JAGs it issued")  # an IdP never redeems its own
    source = trusted.get(issuer) if isinstance(issuer, str) else None
    if source is None:
        raise AssertionRejected("the assertion's issuer is not trusted")
    if prepared is None or prepared.issuer != source.issuer:
        raise AssertionRejected("the issuer's signing keys could not be fetched", unavailable=True)
    if prepared.failure is not None:
        raise prepared.failure
    if prepared.signed_claims is None or prepared.assertion != assertion:
        raise AssertionRejected("the issuer's signing keys could not be fetched", unavailable=True)
    claims = prepared.signed_claims
    _check_registered_claims(claims, source, skew=skew, now=now)
    _check_claims(claims, source, own_issuer=own_issuer, client_id=client_id, skew=skew,
                  max_lifetime=max_lifetime, now=now)
    return VerifiedAssertion(source, claims)


def _check_registered_claims(claims: Mapping[str, Any], source: TrustedAssertionIssuer, *, skew: int,
                             now: dt.datetime) -> None:
    """RFC 7519 §4.1 checks of the signed claims: present, the issuer's, and within their times."""
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise AssertionRejected(f"the assertion lacks {', '.join(missing)}")  # ID-JAG §3: required claims
    if claims["iss"] != source.issuer:
        raise AssertionRejected("the assertion's issuer is not trusted")  # the signed iss, checked again
    exp, nbf = claims["exp"], claims.get("nbf")
    if not _numeric(exp) or (nbf is not None and not _numeric(nbf)):
        raise AssertionRejected("exp and nbf must be numbers")  # RFC 7519 §2 NumericDate
    if exp <= now.timestamp() - skew:
        raise AssertionRejected("the assertion has expired")  # RFC 7519 §4.1.4
    if nbf is not None and nbf > now.timestamp() + skew:
        raise AssertionRejected("the assertion is not valid yet")  # RFC 7519 §4.1.5


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_claims(claims: Mapping[str, Any], source: TrustedAssertionIssuer, *, own_issuer: str, client_id: str,
                  skew: int, max_lifetime: int, now: dt.datetime) -> None:
    audience = claims.get("aud")
    if (audience if isinstance(audience, list) else [audience]) != [own_issuer]:
        raise AssertionRejected("the assertion's audience is not this broker")  # ID-JAG §4.3: aud is the AS issuer
    if not all(isinstance(claims.get(name), str) and claims[name] for name in ("sub", "jti", "client_id")):
        raise AssertionRejected("sub, jti and client_id must be non-empty strings")
    exp, iat = claims["exp"], claims["iat"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)):
        raise AssertionRejected("exp and iat must be integers")  # RFC 7519 §2 NumericDate
    if iat > now.timestamp() + skew:
        raise AssertionRejected("the assertion was issued in the future")  # RFC 7523 §3 item 6
    if exp - iat > max_lifetime:
        raise AssertionRejected("the assertion lives longer than this broker accepts")
    if claims["client_id"] != client_id:
        raise AssertionRejected("the assertion was issued to another client")  # ID-JAG §4.3
    if source.tenant and claims.get("tenant") != source.tenant:
        raise AssertionRejected("the assertion is from another tenant")
    for name in ("resource", "scope"):
        if name in claims and not isinstance(claims[name], str):
            raise AssertionRejected(f"the assertion's {name} must be a string")


