"""Proof Key for Code Exchange (RFC 7636), S256 only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from broker.testidp.errors import InvalidGrant, InvalidRequest

S256 = "S256"
# RFC 7636 §4.1: code-verifier = 43*128unreserved
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
# RFC 7636 §4.2: BASE64URL(SHA256(verifier)) without padding is always 43 characters
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def s256(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_challenge(challenge: str | None, method: str | None) -> str:
    """Validate the authorization request's challenge; return it. Raises ``InvalidRequest``."""
    if challenge is None:
        raise InvalidRequest("code_challenge is required (PKCE, RFC 7636)")  # OAuth 2.1 §4.1.1
    if method != S256:
        # RFC 7636 §4.3: an absent method means "plain", which this provider refuses
        raise InvalidRequest("code_challenge_method must be S256")
    if not _CHALLENGE.match(challenge):
        raise InvalidRequest("code_challenge is not a base64url SHA-256 value")
    return challenge


def verify(verifier: str | None, challenge: str) -> None:
    """Check a token request's ``code_verifier`` against the stored challenge (RFC 7636 §4.6)."""
    if verifier is None:
        raise InvalidRequest("code_verifier is required")  # RFC 7636 §4.5; the code has a challenge
    if not _VERIFIER.match(verifier):
        raise InvalidGrant("code_verifier is not 43-128 unreserved characters")  # RFC 7636 §4.1
    if not hmac.compare_digest(s256(verifier), challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")  # RFC 7636 §4.6
