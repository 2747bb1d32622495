"""Dynamic Client Registration (RFC 7591) on authlib's endpoint.

Deprecated by the MCP specification 2026-07-28 (Client ID Metadata Documents replace it), so
off unless configured; rate limited per source address; optionally held for an administrator.
Registered clients get a generated id that never starts with ``https://`` (those are CIMD URLs).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError, InvalidRedirectURIError

from broker.oauth import client_keys, clients, redirects, secrets
from broker.oauth.client_auth import SECRET_METHODS, SIGNING_ALG, registered_signing_alg
from broker.oauth.errors import OAuth2Error, describe
from broker.storage import clients as client_repo

DCR_GRANTS = {"authorization_code", "refresh_token"}
DCR_AUTH_METHODS = ["none", *SECRET_METHODS, "private_key_jwt"]  # the last with jwks or jwks_uri
_STRINGS = ("token_endpoint_auth_method", "client_name", "client_uri", "logo_uri", "scope", "tos_uri", "policy_uri",
            "jwks_uri", "software_id", "software_version", "software_statement", SIGNING_ALG)
# Pages and an image an administrator or a user may be shown and follow: web URLs only (RFC 7591 §5).
DESCRIPTIVE_URLS = ("client_uri", "logo_uri", "tos_uri", "policy_uri")
KEPT_METADATA = (*DESCRIPTIVE_URLS, "software_id", "software_version", "contacts", SIGNING_ALG)
MAX_CONTACTS = 10
MAX_CONTACT_LENGTH = 320  # an email address
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LISTS_OF_STRINGS = ("redirect_uris", "grant_types", "response_types", "contacts")
_BOOLEANS = ("dpop_bound_access_tokens",)  # RFC 9449 §5.2; authlib does not know it, so the broker reads it


def check_metadata_types(metadata: dict[str, Any]) -> None:
    """RFC 7591 §2: every client metadata field the broker or authlib reads has its JSON type, before either
    reads it (``InvalidClientMetadataError`` naming the field). Unknown fields are ignored, as §2 says."""
    for name in _STRINGS:
        if name in metadata and not isinstance(metadata[name], str):
            raise InvalidClientMetadataError(f"{name} must be a string")
    for name in _BOOLEANS:
        if name in metadata and not isinstance(metadata[name], bool):
            raise InvalidClientMetadataError(f"{name} must be a boolean (true or false)")
    for name in _LISTS_OF_STRINGS:
        value = metadata.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidClientMetadataError(f"{name} must be an array of strings")
    jwks = metadata.get("jwks", {"keys": []})
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) \
            or not all(isinstance(key, dict) for key in jwks["keys"]):
        raise InvalidClientMetadataError("jwks must be a JWK Set: an object whose keys is an array of objects")


def check_supported(metadata: dict[str, Any]) -> None:
    """RFC 7591 §3.2.2: metadata this server cannot honour is ``invalid_client_metadata`` saying what it takes,
    before authlib's checks (whose description names only the field)."""
    method = metadata.get("token_endpoint_auth_method")
    if method is not None and method not in DCR_AUTH_METHODS:
        raise InvalidClientMetadataError(f"token_endpoint_auth_method must be one of {', '.join(DCR_AUTH_METHODS)}")
    if not set(metadata.get("grant_types", [])) <= DCR_GRANTS:
        raise InvalidClientMetadataError("grant_types: only authorization_code and refresh_token may be registered")
    if not set(metadata.get("response_types", [])) <= {"code"}:
        raise InvalidClientMetadataError("response_types: only code is supported")
    if "jwks" in metadata and "jwks_uri" in metadata:  # RFC 7591 §2: MUST NOT both
        raise InvalidClientMetadataError("give the client's keys as jwks or as jwks_uri, not both")
    if "jwks_uri" in metadata:
        try:
            client_keys.check_jwks_uri(metadata["jwks_uri"])
        except client_keys.InvalidKeys as exc:
            raise InvalidClientMetadataError(str(exc)) from None
    try:
        registered_signing_alg(metadata)
    except ValueError as exc:
        raise InvalidClientMetadataError(str(exc)) from None


def check_descriptive(metadata: dict[str, Any]) -> None:
    """What the broker keeps only to show (RFC 7591 §2, §5): web pages and a logo at https URLs (http on a
    loopback host, for development), a few contacts; bounded, without control characters."""
    for name in DESCRIPTIVE_URLS:
        if name in metadata and not _web_url(metadata[name]):
            raise InvalidClientMetadataError(f"{name} must be an https URL (http only on a loopback host) of at "
                                             f"most {client_keys.MAX_URL_LENGTH} characters")
    contacts = metadata.get("contacts", [])
    if len(contacts) > MAX_CONTACTS or any(len(c) > MAX_CONTACT_LENGTH or _CONTROL.search(c) for c in contacts):
        raise InvalidClientMetadataError(f"contacts: at most {MAX_CONTACTS}, each at most {MAX_CONTACT_LENGTH} "
                                         "characters without control characters")


def _web_url(value: str) -> bool:
    if len(value) > client_keys.MAX_URL_LENGTH or _CONTROL.search(value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        return False
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in redirects.LOOPBACK_HOSTS)


class TooManyRegistrations(OAuth2Error):
    error = "too_many_requests"
    status_code = 429


class BrokerRegistrationEndpoint(ClientRegistrationEndpoint):
    def __init__(self, require_approval: bool, max_per_hour: int):
        super().__init__(None)  # authlib's server is only asked to build requests, which the core builds itself
        self.require_approval = require_approval
        self.max_per_hour = max_per_hour

    def authenticate_token(self, request: Any) -> bool:
        """Open registration, limited per source address (RFC 7591 §3 allows it)."""
        since = request.now - dt.timedelta(hours=1)
        address = request.http.client_ip or "unknown"
        if client_repo.count_registered_from(request.db, address, since) >= self.max_per_hour:
            raise TooManyRegistrations("too many registrations from this address; try again later")
        return True

    def extract_client_metadata(self, request: Any) -> dict[str, Any]:
        data = request.payload.data if isinstance(request.payload.data, dict) else {}
        if data:
            check_metadata_types(data)
            check_supported(data)
            check_descriptive(data)
        metadata: dict[str, Any] = super().extract_client_metadata(request)
        # checked above; registered, so the response echoes it (RFC 7591 §3.2.1), false when not given (RFC 9449 §5.2)
        metadata.update({name: data.get(name, False) for name in _BOOLEANS})
        if SIGNING_ALG in data:  # checked above; authlib keeps RFC 7591's fields only, and this is OIDC's
            metadata[SIGNING_ALG] = data[SIGNING_ALG]
        return metadata

    def get_server_metadata(self) -> dict[str, Any]:
        return {"grant_types_supported": sorted(DCR_GRANTS), "response_types_supported": ["code"],
                "token_endpoint_auth_methods_supported": DCR_AUTH_METHODS}

    def generate_client_id(self, request: Any) -> str:
        return clients._new_client_id()

    def generate_client_secret(self, request: Any) -> str | None:
        method = request.payload.data.get("token_endpoint_auth_method", "client_secret_basic")
        return secrets.new_token() if method in SECRET_METHODS else None

    def save_client(self, client_info: dict[str, Any], metadata: dict[str, Any], request: Any) -> Any:
        grant_types = metadata.get("grant_types") or ["authorization_code"]  # check_supported limited them
        try:
            auth = clients.auth_setup([metadata.get("token_endpoint_auth_method", "client_secret_basic")],
                                      jwks=metadata.get("jwks"), jwks_uri=metadata.get("jwks_uri"))
            new = clients.register(
                request.db, client_id=client_info["client_id"], name=str(metadata.get("client_name") or "Unnamed"),
                kind="dcr", redirect_uris=metadata.get("redirect_uris") or [], auth=auth, grant_types=grant_types,
                status="pending" if self.require_approval else "active",
                registered_from=request.http.client_ip or "unknown", secret=client_info.get("client_secret"),
                actor=f"dcr:{request.http.client_ip or 'unknown'}",
                dpop_bound_access_tokens=metadata["dpop_bound_access_tokens"],
                metadata={k: v for k, v in metadata.items() if k in KEPT_METADATA})
        except ValueError as exc:
            error = InvalidRedirectURIError if "redirect" in str(exc) else InvalidClientMetadataError
            raise error(describe(str(exc))) from None
        return new

    def create_registration_response(self, request: Any) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        status, body, headers = super().create_registration_response(request)
        body = {k: v for k, v in body.items() if v is not None}
        if body.get("client_secret") is None:
            body.pop("client_secret_expires_at", None)
        body.setdefault("grant_types", ["authorization_code"])
        body.setdefault("token_endpoint_auth_method", "client_secret_basic")
        return status, body, [*headers, ("Cache-Control", "no-store")]
