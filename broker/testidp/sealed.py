"""Stateless authorization codes and refresh tokens, sealed with AES-GCM under the broker's KEK.

A sealed value is ``base64url(Encryptor.encrypt(json, associated_data))``. The associated data
names the kind (``testidp-code`` / ``testidp-refresh``), so a refresh token never opens as a
code or the other way round. Any broker instance sharing the KEK can open what another sealed;
nothing is stored. Opening proves authenticity only: expiry and bindings (client, redirect
URI, PKCE) are checked by the grant that redeems it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from broker.keys.crypto import DecryptionError, Encryptor
from broker.testidp.errors import InvalidGrant

CODE_AAD = "testidp-code"
REFRESH_AAD = "testidp-refresh"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class AuthorizationCode:
    """What a code stands for (OIDC Core §3.1.2.5); opened means authentic, not yet valid."""

    client_id: str
    redirect_uri: str
    username: str
    nonce: str | None
    code_challenge: str
    scope: tuple[str, ...]
    auth_time: int
    exp: int


@dataclass(frozen=True)
class RefreshGrant:
    """What a refresh token stands for: bound to one client and one user (RFC 6749 §6)."""

    client_id: str
    username: str
    scope: tuple[str, ...]
    auth_time: int
    exp: int


@dataclass(frozen=True)
class Opened:
    """An opened sealed value and the digest of its ciphertext (for single-use tracking)."""

    value: Any
    digest: bytes


class Sealer:
    def __init__(self, encryptor: Encryptor):
        self._encryptor = encryptor

    def seal_code(self, code: AuthorizationCode) -> str:
        return self._seal(asdict(code), CODE_AAD)

    def open_code(self, unverified_code: str) -> Opened:
        """Raise ``InvalidGrant`` unless ``unverified_code`` was sealed here as a code."""
        payload, digest = self._open(unverified_code, CODE_AAD, "authorization code")
        return Opened(AuthorizationCode(**{**payload, "scope": tuple(payload["scope"])}), digest)

    def seal_refresh(self, grant: RefreshGrant) -> str:
        return self._seal(asdict(grant), REFRESH_AAD)

    def open_refresh(self, unverified_token: str) -> Opened:
        """Raise ``InvalidGrant`` unless ``unverified_token`` was sealed here as a refresh token."""
        payload, digest = self._open(unverified_token, REFRESH_AAD, "refresh token")
        return Opened(RefreshGrant(**{**payload, "scope": tuple(payload["scope"])}), digest)

    def _seal(self, payload: dict[str, Any], aad: str) -> str:
        blob = self._encryptor.encrypt(json.dumps(payload, separators=(",", ":")).encode(), aad)
        return base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")

    def _open(self, text: str, aad: str, what: str) -> tuple[dict[str, Any], bytes]:
        blob = _strict_b64decode(text)
        if blob is None:
            raise InvalidGrant(f"malformed {what}")
        try:
            plaintext = self._encryptor.decrypt(blob, aad)
        except DecryptionError:
            raise InvalidGrant(f"unknown or altered {what}") from None
        return json.loads(plaintext), hashlib.sha256(blob).digest()


def _strict_b64decode(text: str) -> bytes | None:
    """Decode unpadded base64url; None unless ``text`` is the one canonical encoding of its bytes."""
    if not _BASE64URL.match(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return raw if canonical == text else None
