"""The IdP's signing keys: fetched from its ``jwks_uri``, cached, refreshed on an unknown ``kid``.

- Keys are reused for ``ttl`` seconds, then fetched again before use.
- A token naming an unknown ``kid`` (the IdP rotated keys) triggers one refetch, but at most one
  per ``min_refresh_interval`` seconds per connector, so a flood of forged tokens cannot turn
  the broker into a load generator against the IdP. A failed refetch counts too.
- So does a signature that fails with the key cached for a known ``kid`` (``verified``): an IdP
  that re-keyed under the same ``kid`` is believed at once, not after ``ttl`` or a restart.
- Fetches are serialised by an ``asyncio.Lock``; logins waiting on it reuse the fetch that ran.
- Failures are never cached; only public signature keys are kept (``oct`` keys, private keys and
  keys marked for encryption are dropped, so an HMAC secret can never come from a JWKS).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import jwt

from broker.federation import calls
from broker.federation.errors import InvalidIdToken, UpstreamUnavailable
from broker.federation.idtoken import UnverifiedHeader

# RFC 7518 §3.1, RFC 8037 §3.1: which key type each allowed algorithm needs
KEY_TYPES = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
             "ES256": "EC", "ES384": "EC", "ES512": "EC", "EdDSA": "OKP"}
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

log = logging.getLogger("broker.federation")

Jwk = dict[str, Any]
T = TypeVar("T")


class JwksCache:
    def __init__(self, fetch: Callable[[], Awaitable[Any]], *, idp_id: str, ttl: float,
                 min_refresh_interval: float, clock: Callable[[], float]):
        self._fetch = fetch
        self._idp_id = idp_id
        self._ttl = ttl
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: list[Jwk] | None = None
        self._fetched_at = 0.0
        self._last_forced_refresh: float | None = None

    async def key(self, header: UnverifiedHeader) -> Any:
        """The public key for ``header`` (``kid`` and ``alg``); ``InvalidIdToken`` when none fits."""
        keys = await self._current()
        found = select_key(keys, header)
        if found is None:
            found = select_key(await self._refresh_for_unknown_kid(header, keys), header)
        if found is None:
            # OIDC Core §10.1: the signing key must be one the issuer publishes at its jwks_uri
            raise InvalidIdToken("the ID token was signed with a key the identity provider does not publish")
        return found

    async def verified(self, header: UnverifiedHeader, verify: Callable[[Any], T],
                       bad_signature: type[Exception]) -> T:
        """``verify(key)`` with the key for ``header``. When it raises ``bad_signature``, the JWKS is fetched
        again (rate limited, as for an unknown ``kid``) and, if the key for that ``kid`` changed, tried once
        more; otherwise the error stands."""
        key = await self.key(header)
        try:
            return verify(key)
        except bad_signature:
            fresh = await self._refresh_for_bad_signature(header, key)
            if fresh is None:
                raise
        return verify(fresh)

    async def _refresh_for_bad_signature(self, header: UnverifiedHeader, failed: Any) -> Any | None:
        try:
            keys = await self._refresh(header, self._keys or [], "the cached key did not verify; refetching JWKS")
            fresh = select_key(keys, header)
        except (InvalidIdToken, UpstreamUnavailable):
            return None  # the signature's failure stands
        return None if fresh is None or fresh is failed else fresh

    async def _current(self) -> list[Jwk]:
        if self._keys is not None and self._clock() < self._fetched_at + self._ttl:
            return self._keys
        async with self._lock:
            if self._keys is None or self._clock() >= self._fetched_at + self._ttl:
                await self._fetch_locked()
            assert self._keys is not None
            return self._keys

    async def _refresh_for_unknown_kid(self, header: UnverifiedHeader, seen: list[Jwk]) -> list[Jwk]:
        return await self._refresh(header, seen, "unknown signing key; refetching JWKS")

    async def _refresh(self, header: UnverifiedHeader, seen: list[Jwk], why: str) -> list[Jwk]:
        async with self._lock:
            assert self._keys is not None
            if self._keys is not seen:
                return self._keys  # refetched while this login waited for the lock
            now = self._clock()
            if self._last_forced_refresh is not None and now < self._last_forced_refresh + self._min_refresh_interval:
                log.info(f"{why}: skipped (rate limit)", extra=self._about(header))
                return self._keys
            self._last_forced_refresh = now
            log.info(why, extra=self._about(header))
            await self._fetch_locked()
            return self._keys

    async def _fetch_locked(self) -> None:
        keys = parse_jwks(await self._fetch())
        self._keys, self._fetched_at = keys, self._clock()
        log.info("JWKS fetched", extra={"idp": self._idp_id, "keys": len(keys)})

    def _about(self, header: UnverifiedHeader) -> dict[str, Any]:
        return {"idp": self._idp_id, "kid": (header.kid or "")[:64]}


def parse_jwks(document: Any) -> list[Jwk]:
    """The usable signature keys of a JWK Set (RFC 7517 §5); ``UpstreamUnavailable`` when malformed."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise UpstreamUnavailable("the identity provider's JWKS is malformed")
    return [jwk for jwk in document["keys"] if _is_public_signature_key(jwk)]


def select_key(keys: list[Jwk], header: UnverifiedHeader) -> Any | None:
    """The key for ``header``: by ``kid``, or the only key when the header names none (OIDC Core §10.1).

    ``None`` when no key carries the ``kid`` (so the caller may refetch); ``InvalidIdToken`` when
    keys carry it but none fits ``alg``.
    """
    candidates = [k for k in keys if k.get("kid") == header.kid] if header.kid is not None else keys
    if header.kid is None and len(candidates) != 1:
        raise InvalidIdToken("the ID token names no key and the identity provider does not publish exactly one")
    if not candidates:
        return None
    for jwk in candidates:
        key = _key_for(jwk, header.alg)
        if key is not None:
            return key
    raise InvalidIdToken("the identity provider's key does not fit the ID token algorithm")


def _is_public_signature_key(jwk: Any) -> bool:
    return (isinstance(jwk, dict)
            and jwk.get("kty") in ("RSA", "EC", "OKP")  # RFC 8725 §3.1: never a symmetric key
            and jwk.get("use", "sig") == "sig"  # RFC 7517 §4.2
            and not any(member in jwk for member in _PRIVATE_MEMBERS)
            and (not isinstance(jwk.get("kid"), str) or len(jwk["kid"]) <= 1024))


def _key_for(jwk: Jwk, alg: str) -> Any | None:
    if jwk.get("kty") != KEY_TYPES.get(alg):
        return None  # RFC 7518 §3.1: the key type follows from alg
    if jwk.get("alg", alg) != alg:
        return None  # RFC 7517 §4.4: a key bound to another algorithm
    try:
        return key_object(jwk, alg)
    except Exception:  # noqa: BLE001 - a malformed key from the IdP is a key that does not fit, whatever it raises
        return None


def key_object(jwk: Jwk, alg: str) -> Any:
    """``jwk`` (a public key) as the key object ``jwt.decode`` takes; built once per key, not per token."""
    return _public_key(json.dumps(jwk, sort_keys=True), alg)


@functools.lru_cache(maxsize=256)
def _public_key(jwk_json: str, alg: str) -> Any:
    """A published key as a key object, built once per key and algorithm (not per verified token)."""
    return jwt.PyJWK(json.loads(jwk_json), algorithm=alg).key


def http_fetcher(http: httpx.AsyncClient, jwks_uri: str, name: str, kind: str = "idp") -> Callable[[], Awaitable[Any]]:
    """A ``JwksCache`` fetch function: GET ``jwks_uri`` (5 s timeout); failures are ``UpstreamUnavailable``.
    ``kind`` and ``name`` label the call (``broker.federation.calls``): id_jag_issuer, signal_sender."""

    async def fetch() -> Any:
        with calls.timed(kind, name, "jwks") as outcome:
            try:
                response = await http.get(jwks_uri, timeout=5.0)
                outcome.status(response.status_code)
                response.raise_for_status()
                return response.json()
            except (httpx.HTTPError, ValueError) as exc:
                if isinstance(exc, httpx.TimeoutException):
                    outcome.value = "timeout"
                raise UpstreamUnavailable(f"keys of {name} unavailable") from exc

    return fetch
