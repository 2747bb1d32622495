"""Protocol errors: authlib's classes carrying their wire codes, plus the ones authlib lacks.

Descriptions go on the wire, so they are forced into RFC 6749's character set (a parameter
name typed by an attacker must not turn an error into a server error).
"""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
    UnsupportedTokenTypeError,
)

__all__ = [
    "AccessDeniedError", "AuthorizationPageError", "InsufficientUserAuthenticationError", "InvalidClientError",
    "InvalidDpopProofError", "InvalidGrantError", "InvalidRequest", "InvalidRequestError", "InvalidScopeError",
    "InvalidTargetError", "OAuth2Error", "TemporarilyUnavailableError",
    "UnauthorizedClientError", "UnsupportedGrantTypeError", "UnsupportedResponseTypeError",
    "UnsupportedSubjectTokenTypeError", "UnsupportedTokenTypeError", "UseDpopNonceError", "describe",
]

_FORBIDDEN = re.compile(r"[^\x20\x21\x23-\x5B\x5D-\x7E]")  # RFC 6749 §5.2 error_description


def describe(text: str | None) -> str | None:
    """``text`` with every character RFC 6749 forbids in ``error_description`` replaced."""
    return None if text is None else _FORBIDDEN.sub("?", text)[:300]


class InvalidRequest(InvalidRequestError):
    def __init__(self, description: str | None = None, **kwargs: object) -> None:
        super().__init__(describe(description), **kwargs)


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the resource is invalid, unknown, or not one this server issues tokens for."""

    error = "invalid_target"


class TemporarilyUnavailableError(OAuth2Error):
    """RFC 6749 §4.1.2.1: the server (here: the upstream IdP) cannot handle the request now."""

    error = "temporarily_unavailable"
    status_code = 503


class UnsupportedSubjectTokenTypeError(OAuth2Error):
    """RFC 8693 token exchange: a ``subject_token_type`` this server does not exchange (a 400, not RFC 7009's 401)."""

    error = "unsupported_token_type"


class InvalidDpopProofError(OAuth2Error):
    """RFC 9449 §5: the DPoP proof is missing where one is required, malformed, replayed or for another request."""

    error = "invalid_dpop_proof"

    def __init__(self, description: str | None = None) -> None:
        super().__init__(describe(description))


class UseDpopNonceError(OAuth2Error):
    """RFC 9449 §8: the proof lacks a nonce this server gave out (or it expired); ``DPoP-Nonce`` carries a fresh one."""

    error = "use_dpop_nonce"

    def __init__(self, description: str, nonce: str) -> None:
        super().__init__(describe(description))
        self.nonce = nonce

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("DPoP-Nonce", self.nonce)]


class InsufficientUserAuthenticationError(OAuth2Error):
    """RFC 9470 §3: the sign-in was not strong enough for this request; the user must authenticate again."""

    error = "insufficient_user_authentication"


class AuthorizationPageError(Exception):
    """An authorization request that must be refused on a page, never by redirect.

    RFC 6749 §4.1.2.1: while the client or the redirect URI is not validated, the user is
    told, and the browser is not sent anywhere (no open redirector).
    """

    def __init__(self, title: str, detail: str, status_code: int = 400):
        super().__init__(f"{title}: {detail}")
        self.title = title
        self.detail = detail
        self.status_code = status_code
