"""Upstream identity providers as connectors: each turns an upstream login into one verified ``Identity``.

Shared core: ``base`` (the ``Connector`` interface, its optional capabilities, ``build_connectors``),
``identity``, ``errors``,
``login`` (the broker's own state, nonce and PKCE verifier), ``http`` (timeouts, size cap),
``discovery`` (metadata, cached), ``jwks`` (keys, cached, kid-miss refresh), ``idtoken`` (every ID
token check), ``claims`` (reading identity claims). Per-IdP modules: ``oidc`` (generic OpenID
Connect with claim names from config, also used for the built-in test IdP); ``okta`` (org and custom
authorization servers, Okta's error shapes) and ``entra`` (tenants, ``oid``, group ids, group overage
through a ``GroupDirectory`` on Microsoft Graph) subclass it.

Connector types are mapped to classes at the composition root (``broker.app``), not here.
"""

from broker.federation.base import (
    Capable,
    Connector,
    ConnectorFactory,
    RefreshConnector,
    RevocationConnector,
    build_connectors,
)
from broker.federation.errors import (
    InvalidIdToken,
    IssuerMismatch,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
    error_from_response,
)
from broker.federation.identity import Identity
from broker.federation.login import LoginSecrets
from broker.federation.oidc import OidcConnector

__all__ = [
    "Capable",
    "Connector",
    "ConnectorFactory",
    "Identity",
    "InvalidIdToken",
    "IssuerMismatch",
    "LoginSecrets",
    "OidcConnector",
    "RefreshConnector",
    "RevocationConnector",
    "UpstreamError",
    "UpstreamRejected",
    "UpstreamUnavailable",
    "build_connectors",
    "error_from_response",
]
