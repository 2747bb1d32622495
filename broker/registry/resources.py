"""Canonical resource URIs (RFC 8707 §2), so that one MCP server has exactly one spelling.

Canonical form: lower-case scheme and host, no default port, no trailing slash on the path,
no fragment, no user information, no dot segments (percent-encoded ones included). Non-ASCII
hosts become IDNA A-labels by UTS #46, as resolvers and browsers compute them, so a Unicode
look-alike never equals a registered ASCII host and no host folds into another registrable one.
"""

from __future__ import annotations

import functools
from urllib.parse import unquote, urlsplit, urlunsplit

import idna

DEFAULT_PORTS = {"https": 443, "http": 80}


class InvalidResource(ValueError):
    """Not an absolute http(s) URI that can name a resource server."""


@functools.lru_cache(maxsize=4096)  # a pure function on the token path (UTS #46 is costly); failures are not cached
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
    if any(unquote(seg) in (".", "..") for seg in path.split("/")):  # %2e is "." too (RFC 3986 §2.3)
        raise InvalidResource("the resource must not contain dot segments")
    netloc = _host(parts.hostname) + ("" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def _host(hostname: str) -> str:
    if ":" in hostname:  # an IPv6 literal
        return f"[{hostname.lower()}]"
    if hostname.isascii():
        return hostname.lower()
    try:
        # UTS #46 (what browsers and resolvers use), not Python's IDNA 2003 codec, which folds "ß" into
        # "ss" and drops zero-width joiners: another, registrable, host name
        return idna.encode(hostname, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        raise InvalidResource("the resource host is not a valid host name") from None
