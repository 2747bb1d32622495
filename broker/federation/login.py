"""The broker's own per-login values towards the IdP: ``state``, ``nonce`` and a PKCE verifier.

They are made fresh for every upstream login, never derived from anything the MCP client sent,
kept server-side between ``/authorize`` and the callback, and used once.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field

ENTROPY_BYTES = 32  # RFC 7636 §7.1, RFC 9700 §4.7.1: at least 256 bits; base64url gives 43 characters


@dataclass(frozen=True)
class LoginSecrets:
    """``state`` (RFC 6749 §10.12), ``nonce`` (OIDC Core §3.1.2.1), ``code_verifier`` (RFC 7636 §4.1)."""

    state: str
    nonce: str
    code_verifier: str = field(repr=False)

    @classmethod
    def new(cls) -> LoginSecrets:
        return cls(state=random_value(), nonce=random_value(), code_verifier=random_value())

    @property
    def code_challenge(self) -> str:
        return s256(self.code_verifier)


def random_value() -> str:
    return secrets.token_urlsafe(ENTROPY_BYTES)


def s256(code_verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))), without padding."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
