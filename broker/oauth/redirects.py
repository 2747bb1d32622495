"""Redirect URIs: what may be registered, and when a requested one matches a registered one.

Matching is exact string comparison (OAuth 2.1 §2.3.1; RFC 9700 §4.1.3), with one exception:
for loopback redirects (127.0.0.1, [::1], localhost) the port may differ, because native
apps listen on an ephemeral port (RFC 8252 §7.3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
FORBIDDEN_SCHEMES = {"javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss"}


class InvalidRedirectUri(ValueError):
    pass


def is_loopback(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def matches(registered: Iterable[str], requested: str) -> bool:
    for candidate in registered:
        if requested == candidate or (is_loopback(candidate) and _same_but_port(candidate, requested)):
            return True
    return False


_LOOPBACK_PORT = re.compile(r"^(http://(?:127\.0\.0\.1|\[::1\]|localhost))(?::(\d{1,5}))?(?=[/?]|$)")


def _same_but_port(registered: str, requested: str) -> bool:
    """The two strings are equal once the port after a loopback host is taken out of both.

    Compared as strings, not as parsed parts: a parser forgives (drops tabs and newlines, lower-cases
    the host, reads an empty query or fragment as none) what an exact match must not.
    """
    if not requested.isascii() or any(c.isspace() or c < "!" or c == "#" for c in requested):
        return False
    a, b = _LOOPBACK_PORT.match(registered), _LOOPBACK_PORT.match(requested)
    if a is None or b is None or (b.group(2) is not None and not 0 < int(b.group(2)) < 65536):
        return False
    return a.group(1) + registered[a.end():] == b.group(1) + requested[b.end():]


def validate_for_registration(uri: str) -> None:
    """Raise ``InvalidRedirectUri`` unless ``uri`` may be registered (OAuth 2.1 §2.3, RFC 8252 §7)."""
    if not uri or len(uri) > 2048 or any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in uri):
        raise InvalidRedirectUri("redirect URIs must be ASCII without spaces")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018
    except ValueError:
        raise InvalidRedirectUri("not a valid URI") from None
    if parts.fragment or "#" in uri:
        raise InvalidRedirectUri("redirect URIs must not contain a fragment")
    if parts.username or parts.password:
        raise InvalidRedirectUri("redirect URIs must not contain user information")
    if parts.scheme == "https":
        if not parts.hostname:
            raise InvalidRedirectUri("https redirect URIs need a host")
    elif parts.scheme == "http":
        if parts.hostname not in LOOPBACK_HOSTS:
            raise InvalidRedirectUri("http redirect URIs are allowed only on loopback (127.0.0.1, [::1], localhost)")
    elif not _SCHEME.match(parts.scheme) or parts.scheme.lower() in FORBIDDEN_SCHEMES:
        # RFC 8252 §7.1: native apps may use a private-use scheme (cursor://, com.example.app:/)
        raise InvalidRedirectUri("use https, http on loopback, or a private-use scheme like com.example.app")
