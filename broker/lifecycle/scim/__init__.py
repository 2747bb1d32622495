"""A SCIM 2.0 server (RFC 7643/7644) for the IdPs' provisioning clients (Okta, Microsoft Entra ID).

The protocol core: it knows no web framework (``broker.web.scim`` is a thin adapter). Messages are
validated and produced with scim2-models; the operations take the request's SQLAlchemy session and
never commit, so a refused request changes nothing.

- ``auth.authenticate``: the per-IdP bearer token -> ``ScimClient``.
- ``users`` / ``groups``: create, get, search, replace, patch, delete.
- ``discovery``: ServiceProviderConfig, ResourceTypes, Schemas.
- ``wire``: body parsing, validation, errors (``SCIMException`` -> RFC 7644 §3.12 ``Error``).
"""

from broker.lifecycle.scim import discovery, groups, users
from broker.lifecycle.scim.auth import authenticate
from broker.lifecycle.scim.events import record_rejection
from broker.lifecycle.scim.wire import (
    MEDIA_TYPE,
    ScimClient,
    ScimRequest,
    ScimResult,
    error_body,
    read_json,
)

__all__ = ["MEDIA_TYPE", "ScimClient", "ScimRequest", "ScimResult", "authenticate", "discovery", "error_body",
           "groups", "read_json", "record_rejection", "users"]
