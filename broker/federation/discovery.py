"""OpenID Provider Metadata (OIDC Discovery 1.0): fetched, checked against the configured issuer, cached.

The document's ``issuer`` must equal the configured issuer byte for byte (OIDC Discovery §4.3),
which stops a misconfigured or hostile discovery document from pointing the broker at another
provider's endpoints (mix-up). Good documents are cached for a bounded time; failures never are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from broker.federation.errors import UpstreamUnavailable
from broker.federation.idtoken import allowed_algorithms

WELL_KNOWN = "/.well-known/openid-configuration"
DEFAULT_AUTH_METHODS = ("client_secret_basic",)  # OIDC Discovery §3: the default when omitted


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document the broker uses, already checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    id_token_algorithms: frozenset[str]  # advertised, within idtoken.ALLOWED_ALGORITHMS
    token_endpoint_auth_methods: tuple[str, ...]
    authorization_response_iss_parameter_supported: bool
    userinfo_endpoint: str | None = None  # OIDC Core §5.3
    revocation_endpoint: str | None = None  # RFC 7009 (RFC 8414 §2)
    scopes_supported: tuple[str, ...] | None = None  # None: not advertised
    grant_types_supported: tuple[str, ...] | None = None


def discovery_url(issuer: str) -> str:
    """OIDC Discovery §4.1: a terminating "/" of the issuer is removed before appending the path."""
    return issuer.rstrip("/") + WELL_KNOWN


def parse_metadata(document: Any, *, issuer: str) -> ProviderMetadata:
    """Check a discovery document; ``UpstreamUnavailable`` naming the first problem."""
    if not isinstance(document, dict):
        raise UpstreamUnavailable("the identity provider's metadata is not a JSON object")
    if document.get("issuer") != issuer:
        # OIDC Discovery §4.3: MUST be identical to the issuer used to find it (mix-up defence)
        raise UpstreamUnavailable("the identity provider's metadata names a different issuer")
    auth_methods = document.get("token_endpoint_auth_methods_supported")
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_endpoint(document, "authorization_endpoint", issuer),
        token_endpoint=_endpoint(document, "token_endpoint", issuer),
        jwks_uri=_endpoint(document, "jwks_uri", issuer),
        id_token_algorithms=allowed_algorithms(document.get("id_token_signing_alg_values_supported")),
        token_endpoint_auth_methods=(tuple(m for m in auth_methods if isinstance(m, str))
                                     if isinstance(auth_methods, list) else DEFAULT_AUTH_METHODS),
        authorization_response_iss_parameter_supported=(
            document.get("authorization_response_iss_parameter_supported") is True),
        userinfo_endpoint=_optional_endpoint(document, "userinfo_endpoint", issuer),
        revocation_endpoint=_optional_endpoint(document, "revocation_endpoint", issuer),
        scopes_supported=_strings(document.get("scopes_supported")),
        grant_types_supported=_strings(document.get("grant_types_supported")),
    )


def _optional_endpoint(document: dict[str, Any], name: str, issuer: str) -> str | None:
    """An optional endpoint: absent, or as valid as a required one (else treated as absent)."""
    if name not in document:
        return None
    try:
        return _endpoint(document, name, issuer)
    except UpstreamUnavailable:
        return None


def _strings(value: Any) -> tuple[str, ...] | None:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else None


def _endpoint(document: dict[str, Any], name: str, issuer: str) -> str:
    """An absolute URL; https unless the issuer itself is http (a development IdP on loopback)."""
    value = document.get(name)
    allowed_schemes = {"https", urlsplit(issuer).scheme}
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in allowed_schemes or not parts.hostname or parts.fragment:
        raise UpstreamUnavailable(f"the identity provider's metadata has no valid {name}")
    return str(value)


class MetadataCache:
    """One provider's metadata, reused for ``ttl`` seconds; concurrent callers share one fetch."""

    def __init__(self, fetch: Callable[[], Awaitable[ProviderMetadata]], *, ttl: float,
                 clock: Callable[[], float]):
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._lock = asyncio.Lock()
        self._metadata: ProviderMetadata | None = None
        self._fetched_at = 0.0

    async def get(self) -> ProviderMetadata:
        if self._metadata is not None and self._fresh():
            return self._metadata
        async with self._lock:
            if self._metadata is None or not self._fresh():
                self._metadata = None  # a failed refetch leaves nothing cached
                self._metadata = await self._fetch()
                self._fetched_at = self._clock()
            return self._metadata

    def _fresh(self) -> bool:
        return self._clock() < self._fetched_at + self._ttl
