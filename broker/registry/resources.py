"""Canonical resource URIs (RFC 8707 §2), so that one MCP server has exactly one spelling.

Canonical form: lower-case scheme and host, no default port, no trailing slash on the path,
no fragment, no user information, no dot segments. Non-ASCII hosts become IDNA (punycode),
so a Unicode look-alike never equals a registered ASCII host.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORTS = {"https": 443, "http": 80}


class InvalidResource(ValueError):
    """Not an absolute http(s) URI that can name a resource server."""


def canonical_resource(uri: str) -> str:
    if not uri or len(uri) > 2048 or any(c.isspace() or ord(c) < 0x21 for c in uri):
        raise InvalidResource("the resource must be an absolute URI without spaces")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise InvalidResource("the resource is not a valid URI") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise InvalidResource("the resource must be an absolute http(s) URI")
    if parts.fragment or "#" in uri:
        raise InvalidResource("the resource must not contain a fragment")  # RFC 8707 §2
    if parts.username is not None or parts.password is not None:
        raise InvalidResource("the resource must not contain user information")
    path = parts.path.rstrip("/")
    if any(seg in (".", "..") for seg in path.split("/")):
        raise InvalidResource("the resource must not contain dot segments")
    netloc = _host(parts.hostname) + ("" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def _host(hostname: str) -> str:
    if ":" in hostname:  # an IPv6 literal
        return f"[{hostname.lower()}]"
    try:
        return hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidResource("the resource host is not a valid host name") from None
