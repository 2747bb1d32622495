"""Everything that can go wrong upstream, as a few classes the client-facing side maps to OAuth errors.

Any failure of an upstream identity provider (network, HTTP status, malformed documents, bad keys,
an ID token that fails a check) surfaces as one of these classes and nothing else:

| class                 | when                                                    | the broker's client gets |
|-----------------------|---------------------------------------------------------|--------------------------|
| ``UpstreamUnavailable`` | timeout, connection error, 5xx, bad JSON, bad metadata | ``temporarily_unavailable`` |
| ``UpstreamRejected``    | the IdP answered with an OAuth error (callback, token) | ``access_denied``        |
| ``InvalidIdToken``      | an ID token check failed                               | ``access_denied``        |
| ``IssuerMismatch``      | an authorization response from another issuer (RFC 9207) | ``access_denied``     |

``client_error`` carries that code (RFC 6749 §4.1.2.1). ``description`` is written by us: safe to
show a user and to log, it never holds a token, code, secret or the IdP's raw response.
"""

from __future__ import annotations

import re
from typing import ClassVar

# RFC 6749 §5.2: error and error_description use only these characters
_OAUTH_ERROR_CHARS = re.compile(r"^[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}$")
_UNSAFE_DESCRIPTION_CHARS = re.compile(r"[^\x20\x21\x23-\x5B\x5D-\x7E]")
MAX_UPSTREAM_DESCRIPTION = 200
# RFC 6749 §4.1.2.1: the provider's own "try again later" codes
_UNAVAILABLE_CODES = frozenset({"server_error", "temporarily_unavailable"})


class UpstreamError(Exception):
    """Base of every upstream failure; ``description`` is ours and safe to show and log."""

    client_error: ClassVar[str] = "access_denied"

    def __init__(self, description: str, *, upstream_error: str | None = None):
        super().__init__(description)
        self.description = description
        self.upstream_error = upstream_error


class UpstreamUnavailable(UpstreamError):
    """The IdP could not be used right now: network failure, timeout, 5xx, malformed response."""

    client_error = "temporarily_unavailable"


class UpstreamRejected(UpstreamError):
    """The IdP answered with an OAuth error (e.g. ``access_denied``, ``invalid_grant``).

    ``upstream_error`` is its error code (RFC 6749 charset, at most 64 characters; build the error with
    ``error_from_response`` so that holds);
    ``upstream_description`` its ``error_description``, cut to safe characters and 200 of them.
    Both come from the IdP: show them to an administrator, never put the description in a log.
    """

    def __init__(self, description: str, *, upstream_error: str | None = None,
                 upstream_description: str | None = None):
        super().__init__(description, upstream_error=upstream_error)
        self.upstream_description = upstream_description


class InvalidIdToken(UpstreamError):
    """The ID token failed a check (OIDC Core §3.1.3.7); ``description`` names which one."""


class IssuerMismatch(UpstreamError):
    """An authorization response names another issuer, or lacks one it must carry (RFC 9207 §2.4)."""


def error_from_response(error: object, error_description: object = None) -> UpstreamError:
    """The error for an OAuth error response of the IdP (callback query or token endpoint JSON).

    Both values are untrusted: a malformed code becomes ``invalid_response``; the description is
    sanitised. ``server_error`` and ``temporarily_unavailable`` mean "try later", so they map to
    ``UpstreamUnavailable``; every other code means the IdP refused.
    """
    code = error if isinstance(error, str) and _OAUTH_ERROR_CHARS.match(error) else "invalid_response"
    if code in _UNAVAILABLE_CODES:
        return UpstreamUnavailable(f"the identity provider is unavailable ({code})", upstream_error=code)
    return UpstreamRejected(f"the identity provider refused the login ({code})", upstream_error=code,
                            upstream_description=_safe_description(error_description))


def _safe_description(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return _UNSAFE_DESCRIPTION_CHARS.sub("?", value[:MAX_UPSTREAM_DESCRIPTION])
