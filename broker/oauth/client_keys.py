"""The public keys of ``private_key_jwt`` clients (RFC 7523 §2.2): registered inline (``jwks``) or at a
``jwks_uri`` the broker fetches.

A ``jwks_uri`` is a URL a stranger may choose (dynamic registration, metadata documents), so it is
fetched only through ``ssrf.HttpsMetadataFetcher``, the fetcher of Client ID Metadata Documents:
https only, public addresses only (pinned), no redirects, small, short. Fetched sets are cached for
as long as their HTTP cache headers say (capped), failures never. A signature that does not verify
under a cached set refetches it once, at most once per ``MIN_REFETCH_SECONDS`` per URL, so a client
that rotated its key under the same ``kid`` authenticates at once and forged assertions cannot turn
the broker into a load generator.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from joserfc.jwk import KeySet, KeySetSerialization

from broker.oauth.ssrf import FetchedDocument, FetchError

log = logging.getLogger("broker.oauth")

ASYMMETRIC_KEY_TYPES = ("EC", "RSA", "OKP")
PRIVATE_KEY_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MAX_URL_LENGTH = 2048  # the clients.jwks_uri column
MAX_KEYS = 20
CACHE_ENTRIES = 1000
MIN_REFETCH_SECONDS = 30.0
MAX_CACHE_SECONDS = 3600.0


class InvalidKeys(ValueError):
    """Keys or a key URL the broker will not use; the message says why."""


def public_jwks(value: Any) -> dict[str, Any]:
    """``value`` as a JWK Set of public signature keys (RFC 7517 §5); ``InvalidKeys`` otherwise."""
    keys = value.get("keys") if isinstance(value, Mapping) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, Mapping) for k in keys):
        raise InvalidKeys("jwks must be a JWK Set: {\"keys\": [...]} with at least one key")
    if len(keys) > MAX_KEYS:
        raise InvalidKeys(f"jwks may hold at most {MAX_KEYS} keys")
    for key in keys:
        if key.get("kty") not in ASYMMETRIC_KEY_TYPES:
            raise InvalidKeys("jwks may hold only public EC, RSA or OKP keys")  # RFC 8725 §3.1: never symmetric
        if any(member in key for member in PRIVATE_KEY_MEMBERS):
            raise InvalidKeys("jwks contains private key material")
    checked = {"keys": [dict(k) for k in keys]}
    try:
        key_set(checked)
    except Exception:  # noqa: BLE001 - joserfc raises several classes for malformed keys
        raise InvalidKeys("jwks is not a valid JWK set") from None
    return checked


def key_set(jwks: Mapping[str, Any]) -> KeySet:
    """joserfc's keys of a JWK Set (JSON as stored or fetched; what it holds is checked on import)."""
    return KeySet.import_key_set(cast(KeySetSerialization, jwks))


def check_jwks_uri(uri: Any) -> str:
    """An https URL with a host, no userinfo and no fragment; ``InvalidKeys`` otherwise."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URL_LENGTH:
        raise InvalidKeys(f"jwks_uri must be an https URL of at most {MAX_URL_LENGTH} characters")
    parts = urlsplit(uri)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidKeys("jwks_uri must be an https URL")
    if "@" in parts.netloc or parts.fragment:
        raise InvalidKeys("jwks_uri must not contain userinfo or a fragment")
    return uri


class KeyFetcher(Protocol):
    def fetch(self, url: str) -> FetchedDocument:
        ...


class ClientKeySets:
    """Key sets fetched from clients' ``jwks_uri`` (thread-safe: client assertions are checked on threads)."""

    def __init__(self, fetcher: KeyFetcher | None, *, lifetime: Callable[[FetchedDocument], float] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.fetcher = fetcher
        self.lifetime = lifetime or (lambda fetched: MAX_CACHE_SECONDS)
        self.clock = clock
        self._sets: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._refetched: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> dict[str, Any]:
        """The key set at ``uri``, cached or fetched now; ``InvalidKeys`` when it cannot be had."""
        with self._lock:
            entry = self._sets.get(uri)
            if entry is not None and self.clock() < entry[0]:
                return entry[1]
        return self._fetch(uri)

    def cached(self, uri: str) -> dict[str, Any] | None:
        """The key set at ``uri`` while its cache entry is fresh; None when ``get`` would fetch."""
        with self._lock:
            entry = self._sets.get(uri)
            return entry[1] if entry is not None and self.clock() < entry[0] else None

    def refetch(self, uri: str) -> dict[str, Any] | None:
        """The key set fetched again after a signature failed; None when rate limited (keep refusing)."""
        now = self.clock()
        with self._lock:
            last = self._refetched.get(uri)
            if last is not None and now < last + MIN_REFETCH_SECONDS:
                log.info("client key set %s: refetch skipped (rate limit)", uri)
                return None
            self._refetched[uri] = now
            if len(self._refetched) > CACHE_ENTRIES:
                self._refetched.pop(next(iter(self._refetched)))
        log.info("client key set %s: a signature did not verify; refetching", uri)
        return self._fetch(uri)

    def _fetch(self, uri: str) -> dict[str, Any]:
        if self.fetcher is None:
            raise InvalidKeys("this server does not fetch client keys (jwks_uri)")
        self.discard(uri)  # a failed fetch leaves nothing stale behind
        try:
            fetched = self.fetcher.fetch(uri)
            keys = public_jwks(json.loads(fetched.body.decode("utf-8")))
        except FetchError as exc:
            raise InvalidKeys(f"the client's jwks_uri could not be fetched: {exc}") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidKeys(f"the client's jwks_uri did not return a usable JWK Set: {exc}") from None
        self._put(uri, keys, self.lifetime(fetched))
        return keys

    def _put(self, uri: str, keys: dict[str, Any], lifetime: float) -> None:
        with self._lock:
            if lifetime > 0:
                self._sets[uri] = (self.clock() + min(lifetime, MAX_CACHE_SECONDS), keys)
                self._sets.move_to_end(uri)
            while len(self._sets) > CACHE_ENTRIES:
                self._sets.popitem(last=False)

    def discard(self, uri: str) -> None:
        with self._lock:
            self._sets.pop(uri, None)
