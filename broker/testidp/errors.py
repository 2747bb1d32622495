"""Protocol errors of the test IdP, each carrying its wire code.

The core raises these; ``broker.web.testidp`` renders them: JSON with ``no-store`` at the
token endpoint, ``WWW-Authenticate`` at userinfo, and at the authorization endpoint either
a page (``redirect`` is None: client or redirect URI not yet trusted) or a redirect to the
client with ``error``, ``state`` and ``iss`` (RFC 6749 §4.1.2.1, RFC 9207).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class RedirectTarget:
    """A validated redirect URI (and the request's ``state``) that an error may be sent to."""

    redirect_uri: str
    state: str | None


class OAuthError(Exception):
    """An OAuth/OIDC error response: ``error`` is the wire code, ``description`` is for humans."""

    error: ClassVar[str] = "invalid_request"
    status_code: ClassVar[int] = 400

    def __init__(self, description: str, redirect: RedirectTarget | None = None):
        super().__init__(description)
        self.description = description
        self.redirect = redirect

    @property
    def redirectable(self) -> bool:
        """True once client and redirect URI are validated: the error may go back to the client."""
        return self.redirect is not None

    def redirecting_to(self, target: RedirectTarget) -> OAuthError:
        self.redirect = target
        return self

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    error = "invalid_client"
    status_code = 401  # RFC 6749 §5.2: 401 with WWW-Authenticate when the client used HTTP Basic


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class LoginRequired(OAuthError):
    error = "login_required"  # OIDC Core §3.1.2.6: prompt=none and no session (there never is one)


class RequestNotSupported(OAuthError):
    error = "request_not_supported"  # OIDC Core §6


class RequestUriNotSupported(OAuthError):
    error = "request_uri_not_supported"  # OIDC Core §6


class InvalidToken(OAuthError):
    error = "invalid_token"  # RFC 6750 §3.1
    status_code = 401


class MissingToken(InvalidToken):
    """RFC 6750 §3.1: the request carried no credentials, so the challenge names no error."""


class InsufficientScope(OAuthError):
    error = "insufficient_scope"  # RFC 6750 §3.1
    status_code = 403

