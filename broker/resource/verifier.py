"""``BrokerTokenVerifier``: the MCP Python SDK's ``TokenVerifier`` for the broker's access tokens.

A Python MCP server hands it to the SDK (``MCPServer(token_verifier=..., auth=AuthSettings(...))``)
and every bearer token is checked locally against the broker's JWKS, in this order:

1. header: ``typ`` is ``at+jwt``, ``alg`` on the asymmetric allow-list, a ``kid`` (RFC 9068 §4, RFC 8725);
2. key: the broker publishes ``kid`` (refetching the JWKS on a miss, rate-limited) for that ``alg``;
3. signature;
4. claims: ``iss`` exact, ``aud`` = this server's resource, ``exp``, ``iat``, ``sub``, ``client_id``,
   ``jti``, ``scope`` (see ``broker.resource.claims.verify_claims``);
5. revocation: the optional ``is_revoked`` hook (the seam for the broker's revocation feed).

Any failure returns ``None`` (the SDK answers 401) and logs the reason and ``kid``, never the token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import httpx
import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from broker.resource.claims import (
    CLOCK_SKEW,
    DEFAULT_ALGORITHMS,
    TokenRejected,
    VerifiedClaims,
    allowed_algorithms,
    check_header,
    verify_claims,
)
from broker.resource.jwks import JwksCache

__all__ = ["BrokerAccessToken", "BrokerTokenVerifier", "RevocationCheck", "current_access_token", "verify_claims"]

logger = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 16 * 1024  # broker tokens are well under 2 KB; do not parse megabytes of base64
HTTP_TIMEOUT = 5.0
# Signature only: the claims are checked by verify_claims, one rule per line.
_SIGNATURE_ONLY: Any = {"verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                        "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False,
                        "require": []}

RevocationCheck = Callable[[VerifiedClaims], bool]
"""Returns True when a verified token has been revoked (by jti, sid, sub or client); must be fast."""


class BrokerAccessToken(AccessToken):
    """The SDK's ``AccessToken`` plus who the broker says is calling.

    ``subject`` is the user id (the client id for client credentials), ``claims`` holds every
    verified claim (``iss`` included, which the SDK uses to bind sessions to their principal).
    """

    email: str | None = None
    jwt_id: str | None = None


def current_access_token() -> BrokerAccessToken | None:
    """The verified token of the request being served (inside a tool, resource or prompt)."""
    token = get_access_token()
    return token if isinstance(token, BrokerAccessToken) else None


class BrokerTokenVerifier:
    """Verify the broker's RFC 9068 JWT access tokens for one MCP server (one resource URI).

    ``issuer`` is the broker's issuer and ``resource`` this server's canonical resource URI, both
    exactly as the broker writes them in ``iss`` and ``aud``. Pass ``http`` to control how the JWKS
    is fetched (tests, proxies); otherwise the verifier owns a client, closed by ``aclose()``.
    """

    def __init__(self, issuer: str, resource: str, *, jwks_uri: str | None = None,
                 algorithms: Collection[str] = DEFAULT_ALGORITHMS, clock_skew: int = CLOCK_SKEW,
                 http: httpx.AsyncClient | None = None, clock: Callable[[], float] = time.time,
                 is_revoked: RevocationCheck | None = None):
        self.issuer = issuer
        self.resource = resource
        self.algorithms = allowed_algorithms(algorithms)
        self.clock_skew = clock_skew
        self.is_revoked = is_revoked
        self._clock = clock
        self._http = http
        self._owns_http = http is None
        self.jwks = JwksCache(jwks_uri or issuer.rstrip("/") + "/jwks", self._client, clock=clock)

    async def verify_token(self, token: str) -> BrokerAccessToken | None:
        """The SDK's ``TokenVerifier`` contract: the token's access info, or None if it must be refused."""
        unverified_kid: object = None
        try:
            unverified_header = _unverified_header(token)
            unverified_kid = unverified_header.get("kid")
            alg, kid = check_header(unverified_header, self.algorithms)
            key = await self.jwks.key(kid)
            # RFC 8725 §3.1: a key is used with one algorithm; the header cannot choose another.
            if key.algorithm_name != alg:
                raise TokenRejected("alg does not match the key")
            unverified_claims = _verified_signature(token, key, alg)
            claims = verify_claims(unverified_claims, issuer=self.issuer, resource=self.resource,
                                   now=self._clock(), clock_skew=self.clock_skew)
            self._check_not_revoked(claims)
        except TokenRejected as rejected:
            logger.info("bearer token rejected: %s (kid=%r)", rejected.reason, _loggable(unverified_kid))
            return None
        return _access_token(token, claims)

    def _check_not_revoked(self, claims: VerifiedClaims) -> None:
        if self.is_revoked is None:
            return
        try:
            revoked = self.is_revoked(claims)
        except Exception:
            logger.exception("revocation check failed; refusing the token")  # fail closed
            raise TokenRejected("revocation check failed") from None
        if revoked:
            raise TokenRejected("token revoked")

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client if the verifier created it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None


def _unverified_header(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected("token too long")
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected("malformed JWS") from None


def _verified_signature(token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
    """The payload, once the signature checks out; the claims are still unchecked."""
    try:
        return jwt.decode(token, key=key.key, algorithms=[alg], options=_SIGNATURE_ONLY)
    except jwt.InvalidSignatureError:
        raise TokenRejected("bad signature") from None
    except jwt.PyJWTError:
        raise TokenRejected("malformed payload") from None


def _access_token(token: str, claims: VerifiedClaims) -> BrokerAccessToken:
    return BrokerAccessToken(
        token=token, client_id=claims.client_id, scopes=list(claims.scopes), expires_at=claims.expires_at,
        resource=claims.audience, subject=claims.subject, claims=dict(claims.claims),
        email=claims.email, jwt_id=claims.jwt_id,
    )


def _loggable(unverified_kid: object) -> str | None:
    """The kid as the token claims it, cut short: it is attacker-chosen text."""
    return unverified_kid[:64] if isinstance(unverified_kid, str) else None
