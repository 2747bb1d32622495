"""Protected Resource Metadata (RFC 9728) and the ``WWW-Authenticate`` challenges that point at it.

An MCP server publishes this document so clients find the broker (``authorization_servers``) and
the scopes to ask for; its 401 and 403 answers carry a ``Bearer`` challenge (RFC 6750 §3) whose
``resource_metadata`` parameter (RFC 9728 §5.1) names the document's URL. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

WELL_KNOWN = "/.well-known/oauth-protected-resource"  # RFC 9728 §3
BEARER_ERRORS = ("invalid_request", "invalid_token", "insufficient_scope")  # RFC 6750 §3.1
# RFC 6750 §3: error, error_description and scope values are limited to these characters, so they
# can be quoted without escaping; a scope token additionally excludes the space (RFC 6749 §3.3).
_QUOTABLE = re.compile(r"[\x20\x21\x23-\x5B\x5D-\x7E]*")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")


def metadata_path(resource: str) -> str:
    """The path of ``resource``'s metadata: the well-known prefix, then the resource's path.

    RFC 9728 §3.1: ``/.well-known/oauth-protected-resource`` goes between the host and the path,
    and a terminating slash after the host is dropped, so ``https://mcp.example.com/github`` ->
    ``/.well-known/oauth-protected-resource/github`` and ``https://mcp.example.com/`` -> the bare
    prefix. Resource identifiers with a query or fragment are refused (RFC 9728 §1.2 forbids the
    fragment; MCP servers have no use for a query and it cannot be routed).
    """
    parts = _parse_resource(resource)
    return WELL_KNOWN + ("" if parts.path == "/" else parts.path)


def metadata_url(resource: str) -> str:
    """The absolute URL of ``resource``'s metadata (what ``resource_metadata=`` carries)."""
    parts = _parse_resource(resource)
    return f"{parts.scheme}://{parts.netloc}{metadata_path(resource)}"


def protected_resource_metadata(resource: str, issuer: str, scopes: Sequence[str],
                                resource_name: str | None = None) -> dict[str, object]:
    """The RFC 9728 §2 document for one MCP server that trusts one broker.

    ``resource`` must be the exact string the broker puts in ``aud`` (clients compare it with the
    URL they connected to, RFC 9728 §3.3); ``issuer`` is the broker's issuer, byte for byte, since
    clients fetch its metadata from it and compare ``issuer`` (RFC 8414 §3.3). ``scopes`` are all
    the scopes the server understands: MCP clients request what ``scopes_supported`` lists when the
    challenge names none.
    """
    _parse_resource(resource)
    document: dict[str, object] = {
        "resource": resource,
        "authorization_servers": [issuer],
        "scopes_supported": [_scope_token(s) for s in scopes],
        "bearer_methods_supported": ["header"],  # MCP: tokens only in the Authorization header
    }
    if resource_name is not None:
        document["resource_name"] = resource_name
    return document


def www_authenticate(resource_metadata_url: str, scope: str | Sequence[str] | None = None,
                     error: str | None = None, *, error_description: str | None = None) -> str:
    """A ``Bearer`` challenge (RFC 6750 §3) for a 401 or 403 answer.

    - 401, no token sent: ``www_authenticate(url, scope)`` -- no ``error`` (RFC 6750 §3.1);
    - 401, token refused: ``error="invalid_token"``;
    - 403, token lacks scopes: ``error="insufficient_scope"`` and ``scope`` = every scope the
      operation needs (MCP step-up: the client asks for these, plus what it already holds).

    ``resource_metadata`` is always there (RFC 9728 §5.1); clients start discovery from it.
    """
    if error is not None and error not in BEARER_ERRORS:
        raise ValueError(f"not an RFC 6750 error code: {error!r}")
    if isinstance(scope, str):
        scope = scope.split()
    params = {
        "error": error,
        "scope": " ".join(_scope_token(s) for s in scope) if scope is not None else None,
        "resource_metadata": resource_metadata_url,
        "error_description": error_description,
    }
    return "Bearer " + ", ".join(f'{name}="{_quotable(value)}"' for name, value in params.items() if value is not None)


def _parse_resource(resource: str) -> SplitResult:
    parts = urlsplit(resource)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"resource must be an absolute http(s) URL: {resource!r}")
    if parts.query or parts.fragment or "?" in resource or "#" in resource:
        raise ValueError(f"resource must have no query or fragment: {resource!r}")
    return parts._replace(path=parts.path or "/")


def _scope_token(scope: str) -> str:
    if not _SCOPE_TOKEN.fullmatch(scope):
        raise ValueError(f"not a valid scope token: {scope!r}")
    return scope


def _quotable(value: str) -> str:
    if not _QUOTABLE.fullmatch(value):
        raise ValueError(f"value cannot appear in a WWW-Authenticate challenge: {value!r}")
    return value
