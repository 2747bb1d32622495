"""The broker's public signing keys, fetched from its ``jwks_uri`` and cached by ``kid``.

The broker publishes a new key before it signs with it, so a token whose ``kid`` is unknown means
"refetch": but at most once per ``refetch_interval``, so a stream of tokens with invented kids
cannot become a stream of requests to the broker. The whole set is also refreshed when older
than ``max_age``, so retired keys drop out. A failed fetch keeps the keys already known.
A bad signature under a known ``kid`` is a forgery, never a re-key: the broker's ``kid`` is its key's
RFC 7638 thumbprint, so it is not a reason to refetch (unlike an IdP's keys, ``federation.jwks``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import httpx
import jwt

from broker.resource.claims import ASYMMETRIC_ALGORITHMS, TokenRejected

logger = logging.getLogger(__name__)

REFETCH_INTERVAL = 30.0  # seconds between two fetches, whatever triggers them
MAX_AGE = 300.0  # refresh a set older than this on next use (the broker's JWKS says max-age=300)
MAX_JWKS_BYTES = 256 * 1024
ASYMMETRIC_KEY_TYPES = ("EC", "RSA", "OKP")


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWK Set (RFC 7517 §5), by ``kid``.

    Skipped: keys without a kid, encryption keys (``use`` other than ``sig``), symmetric keys
    (``oct`` never belongs in a public key set), and keys PyJWT cannot load or would use with an
    algorithm we never accept.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not (isinstance(entry, Mapping) and isinstance(entry.get("kid"), str)
                and entry.get("kty") in ASYMMETRIC_KEY_TYPES and entry.get("use", "sig") == "sig"):
            continue
        try:
            key = jwt.PyJWK(dict(entry))
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if key.algorithm_name in ASYMMETRIC_ALGORITHMS:
            keys[entry["kid"]] = key
    return keys


class JwksCache:
    """Keys by ``kid`` from one ``jwks_uri``; see the module docstring for the refresh rules."""

    def __init__(self, jwks_uri: str, http: Callable[[], httpx.AsyncClient], *, clock: Callable[[], float],
                 refetch_interval: float = REFETCH_INTERVAL, max_age: float = MAX_AGE):
        self.jwks_uri = jwks_uri
        self._http = http
        self._clock = clock
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._lock = anyio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key named ``kid``; raises ``TokenRejected("unknown kid")`` when the broker has none."""
        if self._wants_fetch(kid):
            async with self._lock:
                if self._wants_fetch(kid):  # another task may have fetched while we waited
                    await self._fetch()
        key = self._keys.get(kid)
        if key is None:
            raise TokenRejected("unknown kid")
        return key

    def _wants_fetch(self, kid: str) -> bool:
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < self.refetch_interval:
            return False  # rate limit: whatever the reason, not again so soon
        stale = self._fetched_at is None or now - self._fetched_at >= self.max_age
        return stale or kid not in self._keys

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        try:
            response = await self._http().get(self.jwks_uri, headers={"accept": "application/jwk-set+json, "
                                                                                "application/json"})
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            if len(response.content) > MAX_JWKS_BYTES:
                raise ValueError("JWK set too large")
            keys = parse_jwks(response.json())
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            logger.warning("fetching JWKS from %s failed: %s; keeping %d known keys",
                           self.jwks_uri, exc, len(self._keys))
            return
        self._keys = keys
        self._fetched_at = self._attempted_at
        logger.info("fetched JWKS from %s: kids %s", self.jwks_uri, sorted(keys))
