"""Okta: the org authorization server and custom authorization servers.

Issuer forms (configure ``issuer`` exactly as the discovery document's ``issuer`` says it):

| authorization server | ``issuer``                                     | endpoints under           |
|----------------------|------------------------------------------------|---------------------------|
| org                  | ``https://{org}.okta.com``                     | ``/oauth2/v1/...``        |
| custom (incl. ``default``) | ``https://{org}.okta.com/oauth2/{authServerId}`` | ``/oauth2/{authServerId}/v1/...`` |

The host is not checked (Okta also serves ``okta-emea.com``, ``oktapreview.com`` and custom URL
domains; tests serve it on loopback); the path is, so a pasted endpoint URL
(``.../oauth2/v1/authorize``) or a trailing ``/`` fails at start, not at the first login.
https only, except on a loopback host.

Claims: ``sub`` is Okta's user id (``00u...``), stable for the user's lifetime. ``groups`` is sent
only when the application (org server: the app's *Groups claim filter* and the ``groups`` scope) or
the custom authorization server (a ``groups`` claim) is configured to; absent means no groups.

Errors: the token endpoint answers OAuth errors (``error``/``error_description``, RFC 6749 §5.2),
but Okta's API layer answers its own shape, ``{"errorCode": "E0000047", "errorSummary": ...}``,
for rate limits, unknown authorization servers, missing features and the like. ``okta_api_error``
turns that shape into ``UpstreamUnavailable`` (Okta cannot be used now, or is misconfigured) or
``UpstreamRejected`` (Okta refused this login). At the callback, an unassigned user comes back as
``error=access_denied`` with ``error_description="User is not assigned to the client application."``:
an ordinary OAuth error, mapped to ``access_denied`` by ``error_from_response``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from broker.config import IdpSettings, is_loopback_host
from broker.federation.errors import UpstreamError, UpstreamUnavailable, error_from_response
from broker.federation.http import UpstreamResponse
from broker.federation.oidc import OidcConnector

_AUTH_SERVER_PATH = re.compile(r"^/oauth2/([A-Za-z0-9_-]{1,64})$")
_ERROR_CODE = re.compile(r"^E\d{7}$")

# Okta error codes (developer.okta.com/docs/reference/error-codes) that mean "Okta cannot be used
# now, or the broker's Okta setup is wrong": no login can succeed, so the client hears
# temporarily_unavailable. Any other code from a 4xx means Okta refused this login.
UNAVAILABLE_CODES = {
    "E0000007": "not found: does this authorization server or application exist?",
    "E0000009": "internal server error",
    "E0000010": "Okta is in read-only mode",
    "E0000015": "feature not enabled: custom authorization servers need API Access Management",
    "E0000022": "the endpoint does not support this request",
    "E0000047": "rate limit exceeded",
}
REJECTED_CODES = {
    "E0000004": "authentication failed",
    "E0000005": "invalid session",
    "E0000006": "permission denied",
    "E0000011": "invalid token provided",
}


@dataclass(frozen=True)
class OktaIssuer:
    """A parsed Okta issuer; ``authorization_server`` is ``None`` for the org authorization server."""

    issuer: str
    authorization_server: str | None


def parse_issuer(issuer: str) -> OktaIssuer:
    """Recognise the two issuer forms; ``ValueError`` naming what is wrong otherwise."""
    parts = urlsplit(issuer)
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        raise ValueError(f"Okta issuer {issuer!r}: must be https")
    if parts.query or parts.fragment or parts.username or issuer.endswith("/"):
        raise ValueError(f"Okta issuer {issuer!r}: no query, fragment, credentials or trailing '/'")
    if parts.path == "":
        return OktaIssuer(issuer, None)
    match = _AUTH_SERVER_PATH.match(parts.path)
    if match is None or match.group(1) == "v1":
        raise ValueError(f"Okta issuer {issuer!r}: expected https://{{org}}.okta.com (org authorization server) "
                         "or https://{org}.okta.com/oauth2/{authServerId} (custom, e.g. /oauth2/default)")
    return OktaIssuer(issuer, match.group(1))


def okta_error_code(body: object) -> str | None:
    """Okta's ``errorCode`` when ``body`` has Okta's API error shape, else ``None``."""
    code = body.get("errorCode") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None


def okta_api_error(response: UpstreamResponse) -> UpstreamError | None:
    """The error for an Okta API error body; ``None`` when the body is not that shape."""
    code = okta_error_code(response.body)
    if code is None:
        return None
    if code in UNAVAILABLE_CODES or response.status_code == 429 or response.status_code >= 500:
        return UpstreamUnavailable(f"Okta is unavailable ({code}: {describe(code)})", upstream_error=code)
    return error_from_response(code, response.body.get("errorSummary"))  # 4xx: Okta refused this login


def describe(code: str) -> str:
    return UNAVAILABLE_CODES.get(code) or REJECTED_CODES.get(code) or "see Okta's error code reference"


class OktaConnector(OidcConnector):
    """A ``Connector`` for Okta's org or custom authorization servers (see the module docstring)."""

    offline_access_consent = False  # Okta issues refresh tokens for offline_access when the app allows the grant

    def __init__(self, settings: IdpSettings, *, redirect_uri: str, http: httpx.AsyncClient,
                 clock_skew: int = 60, clock: Callable[[], float] = time.time):
        self.okta_issuer = parse_issuer(settings.issuer)  # a wrong form fails at start, not at a login
        super().__init__(settings, redirect_uri=redirect_uri, http=http, clock_skew=clock_skew, clock=clock)

    @property
    def authorization_server(self) -> str | None:
        """The custom authorization server's id (``default``, ``aus...``), ``None`` for the org server."""
        return self.okta_issuer.authorization_server

    def token_endpoint_error(self, response: UpstreamResponse) -> UpstreamError:
        """Okta's API error shape first (rate limits come as ``E0000047``), then RFC 6749 §5.2."""
        return okta_api_error(response) or super().token_endpoint_error(response)

    def explain_error(self, response: UpstreamResponse) -> str | None:
        """``E0000007: not found ...`` for a discovery or JWKS failure in Okta's error shape."""
        code = okta_error_code(response.body)
        return f"Okta {code}: {describe(code)}" if code else None
