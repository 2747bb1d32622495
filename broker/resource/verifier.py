"""``BrokerTokenVerifier``: the MCP Python SDK's ``TokenVerifier`` for the broker's access tokens.

A Python MCP server hands it to the SDK (``MCPServer(token_verifier=..., auth=AuthSettings(...))``)
and every bearer token is checked locally against the broker's JWKS, in this order:

1. header: ``typ`` is ``at+jwt``, ``alg`` on the asymmetric allow-list, a ``kid`` (RFC 9068 §4, RFC 8725);
2. key: the broker publishes ``kid`` (refetching the JWKS on a miss, rate-limited) for that ``alg``;
3. signature;
4. claims: ``iss`` exact, ``aud`` = this server's resource, ``exp``, ``iat``, ``sub``, ``client_id``,
   ``jti``, ``scope`` (see ``broker.resource.claims.verify_claims``);
5. revocation: the optional ``is_revoked`` hook (the seam for the broker's revocation feed);
6. sender constraint: a token with ``cnf`` (DPoP-bound, RFC 9449) is refused as a bearer token, and
   with ``require_dpop`` every bearer token is.

Any failure returns ``None`` (the SDK answers 401) and logs the reason and ``kid``, never the token.

DPoP (``Authorization: DPoP <token>`` + a ``DPoP`` proof) needs the request's method and URL, which
the SDK's ``TokenVerifier`` interface does not pass: ``broker.resource.DpopAuthMiddleware``, mounted
in front of the SDK's authentication, calls ``verify_dpop`` and hands the verified token on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
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
from broker.resource.dpop import DPOP_ALGORITHMS, IAT_WINDOW, INVALID_DPOP_PROOF, DpopError, DpopProof, check_proof
from broker.resource.jwks import JwksCache
from broker.resource.replay import ProofReplayCache

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
    jkt: str | None = None  # the thumbprint of the DPoP key the token is bound to, when sent with DPoP


# The token of the request being served, once DpopAuthMiddleware verified it with its proof.
_proven: ContextVar[BrokerAccessToken | None] = ContextVar("broker_dpop_proven", default=None)


def current_access_token() -> BrokerAccessToken | None:
    """The verified token of the request being served (inside a tool, resource or prompt)."""
    token = get_access_token()
    return token if isinstance(token, BrokerAccessToken) else None


class BrokerTokenVerifier:
    """Verify the broker's RFC 9068 JWT access tokens for one MCP server (one resource URI).

    ``issuer`` is the broker's issuer and ``resource`` this server's canonical resource URI, both
    exactly as the broker writes them in ``iss`` and ``aud``. Pass ``http`` to control how the JWKS
    is fetched (tests, proxies); otherwise the verifier owns a client, closed by ``aclose()``.

    DPoP: ``dpop_algorithms`` are the proof algorithms accepted (and announced in ``algs``),
    ``dpop_iat_window`` the seconds a proof's ``iat`` may be off, ``replay_cache`` the memory of used
    proofs (one per process by default), ``require_dpop`` refuses every bearer token.
    """

    def __init__(self, issuer: str, resource: str, *, jwks_uri: str | None = None,
                 algorithms: Collection[str] = DEFAULT_ALGORITHMS, clock_skew: int = CLOCK_SKEW,
                 http: httpx.AsyncClient | None = None, clock: Callable[[], float] = time.time,
                 is_revoked: RevocationCheck | None = None, require_dpop: bool = False,
                 dpop_algorithms: Collection[str] = DPOP_ALGORITHMS, dpop_iat_window: float = IAT_WINDOW,
                 replay_cache: ProofReplayCache | None = None):
        self.issuer = issuer
        self.resource = resource
        self.algorithms = allowed_algorithms(algorithms)
        self.clock_skew = clock_skew
        self.is_revoked = is_revoked
        self.require_dpop = require_dpop
        self.dpop_algorithms = tuple(sorted(allowed_algorithms(dpop_algorithms)))
        self.dpop_iat_window = dpop_iat_window
        self.replay_cache = replay_cache if replay_cache is not None else ProofReplayCache()
        self._clock = clock
        self._http = http
        self._owns_http = http is None
        self.jwks = JwksCache(jwks_uri or issuer.rstrip("/") + "/jwks", self._client, clock=clock)

    async def verify_token(self, token: str) -> BrokerAccessToken | None:
        """The SDK's ``TokenVerifier`` contract: the token's access info, or None if it must be refused.

        A token that ``DpopAuthMiddleware`` verified with its proof for this request is returned as
        verified; any other is a bearer token, refused when DPoP-bound or when ``require_dpop`` is set.
        """
        proven = _proven.get()
        if proven is not None and proven.token == token:
            return proven
        try:
            claims = await self._verified_claims(token)
        except TokenRejected:
            return None  # logged with its kid
        # RFC 9449 §7.2: a sender-constrained token without its proof is a stolen token until shown otherwise.
        refusal = ("DPoP-bound token sent as Bearer" if "cnf" in claims.claims
                   else "bearer token sent where DPoP is required" if self.require_dpop else None)
        if refusal is not None:
            logger.info("bearer token rejected: %s", refusal)
            return None
        return _access_token(token, claims)

    async def verify_dpop(self, token: str, proofs: Sequence[str], *, method: str, url: str) -> BrokerAccessToken:
        """Verify ``Authorization: DPoP <token>`` with the request's ``DPoP`` header values (RFC 9449 §7.1).

        ``method`` and ``url`` are the request's (the URL as clients address this server). Checks the
        proof (``broker.resource.dpop.check_proof``, with ``ath`` of this token), the token (as
        ``verify_token``), that the token's ``cnf.jkt`` is the proof key's thumbprint, and that the
        proof was not used before in this process. Raises ``DpopError`` with ``error``
        ``invalid_dpop_proof`` (the proof) or ``invalid_token`` (the token); the reason is logged, and
        the description names the failed check only (safe to send).
        """
        now = self._clock()
        try:
            proof = check_proof(proofs, htm=method, htu=url, now=now, algorithms=self.dpop_algorithms,
                                iat_window=self.dpop_iat_window, access_token=token)
            try:
                claims = await self._verified_claims(token)
            except TokenRejected as rejected:  # logged with its kid
                raise DpopError("invalid_token", rejected.reason) from None
            self._check_binding(claims, proof, now)
        except DpopError as refused:
            logger.info("DPoP request rejected: %s", refused.description)
            raise
        return _access_token(token, claims, jkt=proof.jkt)

    def _check_binding(self, claims: VerifiedClaims, proof: DpopProof, now: float) -> None:
        """The token is bound to the proof's key, and the proof is used for the first time."""
        # RFC 9449 §7.1: the DPoP scheme is for bound tokens; the proof's key must be the bound one.
        bound_jkt = _bound_key(claims.claims)
        if bound_jkt is None:
            raise DpopError("invalid_token", "token is not DPoP-bound")
        if bound_jkt != proof.jkt:  # thumbprints are public: no constant-time compare needed
            raise DpopError(INVALID_DPOP_PROOF, "proof key is not the key the token is bound to")
        # RFC 9449 §11.1: each proof once; remembered until its iat leaves the window.
        if not self.replay_cache.use(proof.jkt, proof.jti, proof.iat + self.dpop_iat_window, now):
            raise DpopError(INVALID_DPOP_PROOF, "too many recent proofs to remember" if self.replay_cache.full()
                            else "proof already used")

    @contextmanager
    def proven(self, access: BrokerAccessToken) -> Iterator[None]:
        """While inside, ``verify_token(access.token)`` returns ``access``: what ``verify_dpop`` verified
        for the request being served (``DpopAuthMiddleware`` wraps the rest of the request in it)."""
        reset = _proven.set(access)
        try:
            yield
        finally:
            _proven.reset(reset)

    async def _verified_claims(self, token: str) -> VerifiedClaims:
        """Steps 1-5 of the module docstring; raises ``TokenRejected`` (its reason names the check, never
        the token's own text), after logging it with the ``kid``."""
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
            logger.info("token rejected: %s (kid=%r)", rejected.reason, _loggable(unverified_kid))
            raise
        return claims

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


def _access_token(token: str, claims: VerifiedClaims, jkt: str | None = None) -> BrokerAccessToken:
    return BrokerAccessToken(
        token=token, client_id=claims.client_id, scopes=list(claims.scopes), expires_at=claims.expires_at,
        resource=claims.audience, subject=claims.subject, claims=dict(claims.claims),
        email=claims.email, jwt_id=claims.jwt_id, jkt=jkt,
    )


def _bound_key(claims: Mapping[str, Any]) -> str | None:
    """``cnf.jkt`` (RFC 9449 §6.1), the thumbprint of the key a DPoP-bound token is bound to."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, Mapping) else None
    return jkt if isinstance(jkt, str) and jkt else None


def _loggable(unverified_kid: object) -> str | None:
    """The kid as the token claims it, cut short: it is attacker-chosen text."""
    return unverified_kid[:64] if isinstance(unverified_kid, str) else None
