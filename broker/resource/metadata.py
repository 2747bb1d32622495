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
DPOP_ERRORS = (*BEARER_ERRORS, "invalid_dpop_proof", "use_dpop_nonce")  # RFC 9449 §7.1, §9
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
                                resource_name: str | None = None, *, dpop_algorithms: Sequence[str] | None = None,
                                dpop_required: bool = False) -> dict[str, object]:
    """The RFC 9728 §2 document for one MCP server that trusts one broker.

    ``resource`` must be the exact string the broker puts in ``aud`` (clients compare it with the
    URL they connected to, RFC 9728 §3.3); ``issuer`` is the broker's issuer, byte for byte, since
    clients fetch its metadata from it and compare ``issuer`` (RFC 8414 §3.3). ``scopes`` are all
    the scopes the server understands: MCP clients request what ``scopes_supported`` lists when the
    challenge names none. ``dpop_algorithms``: the DPoP proof algorithms accepted, when DPoP is
    (``dpop_signing_alg_values_supported``); ``dpop_required``: bearer tokens are refused (RFC 9728 §2).
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
    if dpop_algorithms is not None:
        document["dpop_signing_alg_values_supported"] = list(dpop_algorithms)
    if dpop_required:
        document["dpop_bound_access_tokens_required"] = True
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
    return _challenge("Bearer", error=error, scope=_scope_list(scope), resource_metadata=resource_metadata_url,
                      error_description=error_description)


def www_authenticate_dpop(algorithms: Sequence[str], resource_metadata_url: str | None = None,
                          error: str | None = None, *, error_description: str | None = None,
                          scope: str | Sequence[str] | None = None) -> str:
    """A ``DPoP`` challenge (RFC 9449 §7.1): ``algs`` lists the proof algorithms this server accepts.

    Sent alone to a request that used the DPoP scheme (``error="invalid_dpop_proof"`` for a bad proof,
    ``"invalid_token"`` for a bad token, ``"insufficient_scope"`` with ``scope``), and beside the
    ``Bearer`` challenge on a 401 to anything else, so clients learn that DPoP is accepted.
    """
    if error is not None and error not in DPOP_ERRORS:
        raise ValueError(f"not an RFC 9449 error code: {error!r}")
    return _challenge("DPoP", error=error, scope=_scope_list(scope), algs=" ".join(map(_scope_token, algorithms)),
                      resource_metadata=resource_metadata_url, error_description=error_description)


def _scope_list(scope: str | Sequence[str] | None) -> str | None:
    if scope is None:
        return None
    return " ".join(_scope_token(s) for s in (scope.split() if isinstance(scope, str) else scope))


def _challenge(scheme: str, **params: str | None) -> str:
    return f"{scheme} " + ", ".join(f'{name}="{_quotable(value)}"' for name, value in params.items()
                                    if value is not None)


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
