"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP 2026-07-28 client registration).

A client whose ``client_id`` is an https URL is described by the JSON document at that URL. The
broker fetches it (``ssrf.HttpsMetadataFetcher``: https only, no redirects, public addresses only,
pinned, small, short), checks it (``verify_document``), caches it for as long as its HTTP cache
headers say (capped by ``cimd.max_cache_seconds``; failures never cached), and keeps a ``clients`` row
(kind ``cimd``) in step with it, so administrators can list and disable these clients. A disabled
row refuses the client whatever the document says; a document that can no longer be fetched
refuses it as soon as its cache entry is stale.

Contract of ``CimdClients.resolve``: it returns the stored row only when the URL passes the URL rules
and the host lists, and either the row is disabled/held by an administrator, or a document verified
within its cache lifetime says this client exists. Anything else raises ``CimdError``, whose
``detail`` is ours and safe to show the user (error page) and the client (``invalid_client``).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import SplitResult, unquote, urlsplit

from sqlalchemy.orm import Session

from broker import audit
from broker.config import CimdSettings
from broker.oauth import client_auth, client_keys, redirects
from broker.oauth.ssrf import FetchedDocument, FetchError
from broker.storage import clients as repo
from broker.storage.clients import ClientRow
from broker.storage.enums import ClientKind, ClientStatus
from broker.storage.models import utcnow

log = logging.getLogger("broker.oauth")

MAX_URL_LENGTH = 2048  # the clients.id column
MAX_NAME_LENGTH = 200  # the clients.name column
CACHE_ENTRIES = 1000
ALLOWED_GRANTS = ("authorization_code", "refresh_token")
ALLOWED_METHODS = ("none", "private_key_jwt")
# CIMD: no shared secret can exist between a document and an AS, so no method built on one.
SYMMETRIC_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt")
SECRET_FIELDS = ("client_secret", "client_secret_expires_at")
DESCRIPTIVE_FIELDS = ("client_uri", "logo_uri", "tos_uri", "policy_uri", "software_id", "software_version")


class CimdError(Exception):
    """This client_id URL or its document cannot be used. ``detail`` is ours: safe to show and log."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InvalidDocument(ValueError):
    """The fetched document breaks a rule; the message names the rule."""


class MetadataFetcher(Protocol):
    """Fetches the document at a client_id URL (``ssrf.HttpsMetadataFetcher``; tests pass ``Fake*`` ones)."""

    def fetch(self, url: str) -> FetchedDocument:
        """The ``200`` response at ``url``; raise ``ssrf.FetchError`` with a readable reason otherwise."""
        ...


@dataclass(frozen=True)
class ClientMetadata:
    """A verified Client ID Metadata Document: only what the broker uses, each field checked."""

    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    grant_types: tuple[str, ...]
    jwks: dict[str, Any] | None
    jwks_uri: str | None = None
    descriptive: dict[str, Any] = field(default_factory=dict)  # client_uri, logo_uri, ... (shown, never trusted)
    dpop_bound_access_tokens: bool = False  # RFC 9449 §5.2: DPoP-bound access tokens only

    def row_values(self) -> dict[str, Any]:
        """The ``clients`` columns this document decides (never status, trusted, scopes or introspection)."""
        return {"name": self.client_name, "redirect_uris": list(self.redirect_uris),
                "token_endpoint_auth_method": self.token_endpoint_auth_method, "grant_types": list(self.grant_types),
                "jwks": self.jwks, "jwks_uri": self.jwks_uri, "metadata_": dict(self.descriptive),
                "dpop_bound_access_tokens": self.dpop_bound_access_tokens}


# ---------------------------------------------------------------- the URL and its host


def is_client_id_url(client_id: str) -> bool:
    """Whether this client_id names a metadata document (generated client ids never start with https://)."""
    return client_id.startswith("https://")


def check_client_id_url(client_id: str) -> SplitResult:
    """The parsed URL if it may be a client identifier (CIMD: Client Identifier URL); ``CimdError`` otherwise."""
    if len(client_id) > MAX_URL_LENGTH:
        raise CimdError(f"the client_id URL is longer than {MAX_URL_LENGTH} characters")
    if any(not 0x21 <= ord(c) <= 0x7E for c in client_id) or "\\" in client_id:
        raise CimdError("the client_id URL must be printable ASCII without spaces or backslashes")
    try:
        parts = urlsplit(client_id)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise CimdError("the client_id is not a valid URL") from None
    if parts.scheme != "https":
        raise CimdError("a client_id URL must use https")
    if "#" in client_id:
        raise CimdError("a client_id URL must not contain a fragment")
    if "@" in parts.netloc:
        raise CimdError("a client_id URL must not contain user information")
    if not parts.hostname:
        raise CimdError("a client_id URL must name a host")
    if parts.path in ("", "/"):
        raise CimdError("a client_id URL must have a path (like https://example.com/client.json)")
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        raise CimdError("a client_id URL must not contain . or .. path segments")
    return parts


def check_host(host: str, allowed: Sequence[str], denied: Sequence[str]) -> None:
    """Apply ``cimd.denied_hosts`` (first) and ``cimd.allowed_hosts``: exact names or ``*.suffix``."""
    name = host.rstrip(".").lower()
    if any(host_matches(name, pattern) for pattern in denied):
        raise CimdError(f"this server does not accept applications described on {host}")
    if allowed and not any(host_matches(name, pattern) for pattern in allowed):
        raise CimdError(f"this server accepts only applications described on approved hosts, and {host} is not one")


def host_matches(host: str, pattern: str) -> bool:
    """``*.example.com`` matches every subdomain of example.com (not example.com itself); else exact."""
    pattern = pattern.strip().strip("[]").rstrip(".").lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


# ---------------------------------------------------------------- the document


def verify_document(client_id: str, unverified_body: bytes) -> ClientMetadata:
    """The document's metadata once every CIMD rule holds; ``InvalidDocument`` naming the first broken rule."""
    doc = _json_object(unverified_body)
    if doc.get("client_id") != client_id:  # CIMD: simple string comparison (RFC 3986 §6.2.1), no normalisation
        raise InvalidDocument("its client_id is not exactly the URL it was fetched from")
    for name in SECRET_FIELDS:  # CIMD: a public document cannot carry a shared secret
        if name in doc:
            raise InvalidDocument(f"it contains {name}, which a metadata document must not")
    method = _auth_method(doc)
    grant_types = _subset(doc, "grant_types", ["authorization_code"], ALLOWED_GRANTS)
    if "authorization_code" not in grant_types:
        raise InvalidDocument("grant_types must include authorization_code")
    _subset(doc, "response_types", ["code"], ("code",))
    jwks, jwks_uri = _keys(doc) if method == "private_key_jwt" else (None, None)
    return ClientMetadata(client_id=client_id, client_name=_client_name(doc), redirect_uris=_redirect_uris(doc),
                          token_endpoint_auth_method=method, grant_types=tuple(grant_types),
                          jwks=jwks, jwks_uri=jwks_uri, descriptive=_descriptive(doc),
                          dpop_bound_access_tokens=_dpop_bound(doc))


def _json_object(body: bytes) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):  # two parsers could read two different documents
            raise InvalidDocument("it repeats a member name")
        return dict(pairs)

    try:
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=no_duplicates)
    except InvalidDocument:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidDocument("it is not valid JSON (UTF-8)") from None
    if not isinstance(doc, dict):
        raise InvalidDocument("it is not a JSON object")
    return doc


def _client_name(doc: Mapping[str, Any]) -> str:
    name = doc.get("client_name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidDocument("client_name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidDocument(f"client_name is longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in name):  # control, bidi override, zero-width
        raise InvalidDocument("client_name contains control or formatting characters")
    return name.strip()


def _dpop_bound(doc: Mapping[str, Any]) -> bool:
    value = doc.get("dpop_bound_access_tokens", False)
    if not isinstance(value, bool):
        raise InvalidDocument("dpop_bound_access_tokens must be true or false")
    return value


def _redirect_uris(doc: Mapping[str, Any]) -> tuple[str, ...]:
    uris = doc.get("redirect_uris")
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        raise InvalidDocument("redirect_uris must be a non-empty list of URIs")
    for uri in uris:
        try:
            redirects.validate_for_registration(uri)
        except redirects.InvalidRedirectUri as exc:
            raise InvalidDocument(f"redirect URI {uri[:100]!r}: {exc}") from None
    return tuple(uris)


def _auth_method(doc: Mapping[str, Any]) -> str:
    method = doc.get("token_endpoint_auth_method", "none")
    if method in SYMMETRIC_METHODS:
        raise InvalidDocument(f"token_endpoint_auth_method {method} needs a shared secret, which a metadata "
                              "document cannot have (use none or private_key_jwt)")
    if method not in ALLOWED_METHODS:
        raise InvalidDocument("token_endpoint_auth_method must be none or private_key_jwt")
    return str(method)


def _keys(doc: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """``(jwks, jwks_uri)``: exactly one of them (RFC 7591 §2); a jwks_uri is fetched like this document."""
    if "jwks" in doc and "jwks_uri" in doc:
        raise InvalidDocument("jwks and jwks_uri must not both be present")  # RFC 7591 §2
    try:
        if "jwks_uri" in doc:
            return None, client_keys.check_jwks_uri(doc["jwks_uri"])
        if "jwks" not in doc:
            raise InvalidDocument("private_key_jwt needs the client's public keys in jwks or jwks_uri")
        return client_keys.public_jwks(doc["jwks"]), None
    except client_keys.InvalidKeys as exc:
        raise InvalidDocument(str(exc)) from None


def _subset(doc: Mapping[str, Any], name: str, default: list[str], allowed: Sequence[str]) -> list[str]:
    values = doc.get(name, default)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidDocument(f"{name} must be a list of strings")
    extra = sorted(set(values) - set(allowed))
    if extra:
        raise InvalidDocument(f"{name} may contain only {', '.join(allowed)} (not {', '.join(extra)[:100]})")
    return list(dict.fromkeys(values))


def _descriptive(doc: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: doc[k] for k in DESCRIPTIVE_FIELDS if isinstance(doc.get(k), str) and
                            len(doc[k]) <= MAX_URL_LENGTH}
    try:
        if (alg := client_auth.registered_signing_alg(doc)) is not None:
            kept[client_auth.SIGNING_ALG] = alg  # what the token endpoint then holds its assertions to
    except ValueError as exc:
        raise InvalidDocument(str(exc)) from None
    contacts = doc.get("contacts")
    if isinstance(contacts, list) and all(isinstance(c, str) and len(c) <= 320 for c in contacts):
        kept["contacts"] = contacts[:10]
    return kept


# ---------------------------------------------------------------- caching (RFC 9111)


def cache_lifetime(fetched: FetchedDocument, cap: float) -> float:
    """How long a fetched document (or key set) may be reused: its freshness lifetime, capped."""
    return freshness_lifetime(fetched.headers, fetched.received_at, cap)


def freshness_lifetime(headers: Mapping[str, str], received_at: dt.datetime, cap: float) -> float:
    """Seconds the response may be reused: RFC 9111 §4.2.1 from Cache-Control/Expires, at most ``cap``.

    Without explicit freshness the document is not reused (no heuristic freshness).
    """
    directives = _cache_control(headers.get("cache-control", ""))
    if "no-store" in directives or "no-cache" in directives:  # no-cache: must revalidate, which we do not
        return 0.0
    age = _seconds(headers.get("age")) or 0
    if "max-age" in directives:
        max_age = _seconds(directives["max-age"])
        return 0.0 if max_age is None else _clamp(max_age - age, cap)  # §4.2.1: an invalid max-age is stale
    if "expires" in headers:
        expires = _http_date(headers["expires"])
        date = _http_date(headers.get("date", "")) or received_at
        return 0.0 if expires is None else _clamp((expires - date).total_seconds() - age, cap)  # §5.3
    return 0.0


def _cache_control(value: str) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for part in value.split(","):
        name, _, argument = part.strip().partition("=")
        if not name:
            continue
        name = name.strip().lower()
        if name == "max-age" and name in directives:  # §4.2.1: a repeated max-age may be treated as stale
            directives["no-cache"] = None
        directives[name] = argument.strip().strip('"') if argument else None
    return directives


def _seconds(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _http_date(value: str) -> dt.datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def _clamp(seconds: float, cap: float) -> float:
    return max(0.0, min(float(seconds), float(cap)))


class DocumentCache:
    """Verified documents by URL until their freshness lifetime ends; LRU-bounded, thread-safe."""

    def __init__(self, max_entries: int = CACHE_ENTRIES, clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, ClientMetadata]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> ClientMetadata | None:
        with self._lock:
            entry = self._entries.get(url)
            if entry is None:
                return None
            if self.clock() >= entry[0]:
                del self._entries[url]
                return None
            self._entries.move_to_end(url)
            return entry[1]

    def put(self, url: str, metadata: ClientMetadata, lifetime: float) -> None:
        with self._lock:
            self._entries.pop(url, None)
            if lifetime <= 0:
                return
            self._entries[url] = (self.clock() + lifetime, metadata)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, url: str) -> None:
        with self._lock:
            self._entries.pop(url, None)

    def __len__(self) -> int:
        return len(self._entries)


# ---------------------------------------------------------------- clients described by documents


class CimdClients:
    """Turns a client_id URL into its ``clients`` row, fetching and verifying its document when needed."""

    def __init__(self, settings: CimdSettings, fetcher: MetadataFetcher | None, cache: DocumentCache | None = None):
        self.settings = settings
        self.fetcher = fetcher
        self.cache = cache or DocumentCache()

    def check(self, client_id: str) -> None:
        """``CimdError`` unless this server accepts this client_id URL (its rules and host lists)."""
        if not self.settings.enabled or self.fetcher is None:
            raise CimdError("this server does not accept client metadata documents (URL client ids)")
        parts = check_client_id_url(client_id)
        check_host(parts.hostname or "", self.settings.allowed_hosts, self.settings.denied_hosts)

    def fresh(self, client_id: str) -> ClientMetadata | None:
        """The verified document, when it needs no fetch; else None (``fetch`` it, outside any transaction)."""
        self.check(client_id)
        return self.cache.get(client_id)

    def fetch(self, client_id: str) -> ClientMetadata:
        """Fetch, verify and cache the document (blocking: the network); ``CimdError`` when it cannot be used."""
        self.check(client_id)
        return self._fetch(client_id)

    def resolve(self, session: Session, client_id: str, row: ClientRow | None) -> ClientRow:
        """The client's row (``row`` is the stored one, if any); see the module docstring for the contract."""
        self.check(client_id)
        if row is not None and row.status != ClientStatus.ACTIVE:
            return row  # disabled or held by an administrator: refused by the caller, whatever the document says
        metadata = self.cache.get(client_id)
        if metadata is None:
            metadata = self._fetch(client_id)
            return self._store(session, metadata, row)
        return row if row is not None else self._store(session, metadata, None)

    def _fetch(self, client_id: str) -> ClientMetadata:
        assert self.fetcher is not None
        self.cache.discard(client_id)  # a stale entry never outlives a failed fetch
        try:
            fetched = self.fetcher.fetch(client_id)
        except FetchError as exc:
            log.info("client metadata document %s not fetched: %s", client_id, exc)
            raise CimdError(f"its metadata document could not be fetched: {exc}") from None
        try:
            metadata = verify_document(client_id, fetched.body)
        except InvalidDocument as exc:
            log.info("client metadata document %s refused: %s", client_id, exc)
            raise CimdError(f"its metadata document is not acceptable: {exc}") from None
        lifetime = cache_lifetime(fetched, self.settings.max_cache_seconds)
        self.cache.put(client_id, metadata, lifetime)
        return metadata

    def _store(self, session: Session, metadata: ClientMetadata, row: ClientRow | None) -> ClientRow:
        """Insert or update the row from a freshly verified document (status and admin flags untouched)."""
        values = metadata.row_values()
        if row is None:
            if repo.insert_if_absent(session, {"id": metadata.client_id, "kind": ClientKind.CIMD,
                                               "status": ClientStatus.ACTIVE, **values}):
                _audit(session, "client.cimd_added", metadata, sorted(values))
            row = repo.get(session, metadata.client_id)  # ours, or the one another instance stored first
            assert row is not None
            if row.kind != ClientKind.CIMD or row.status != ClientStatus.ACTIVE:
                return row
        changed = {k: v for k, v in values.items() if getattr(row, k) != v}
        if not changed:
            return row
        now = utcnow()
        repo.update(session, row.id, changed, now)
        _audit(session, "client.cimd_updated", metadata, sorted(changed))
        return row._replace(**changed, updated_at=now)


def _audit(session: Session, event_type: str, metadata: ClientMetadata, fields: list[str]) -> None:
    """A client appearing, or its document changing (redirect URIs, keys), is worth a record."""
    audit.record(session, event_type, actor=metadata.client_id, client_id=metadata.client_id,
                 data={"fields": [f.rstrip("_") for f in fields], "client_name": metadata.client_name,
                       "redirect_uris": list(metadata.redirect_uris),
                       "token_endpoint_auth_method": metadata.token_endpoint_auth_method})
