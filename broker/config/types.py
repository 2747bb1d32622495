"""The value types settings are made of: identifiers, signature algorithms, secrets, URLs, addresses.

Each rule lives here once; the section models in ``models`` and the checks in ``checks`` use them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from typing import Annotated, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import BeforeValidator, Field

# Values from config.example.toml and the docs that must never run in production.
PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "password", "CHANGE-ME"}

# A short name that appears in URLs (/callback/<id>), user keys, audit events and logs.
Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]

# Signature algorithms accepted on JWTs from others; never none or HMAC.
JwsAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
JwsAlgorithms = list[JwsAlgorithm]
DEFAULT_JWS_ALGORITHMS: list[JwsAlgorithm] = ["RS256", "ES256"]
# What DPoP proofs (RFC 9449) may be signed with: the same asymmetric set; ES256 is what MCP clients use.
DEFAULT_DPOP_ALGORITHMS: list[JwsAlgorithm] = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]




def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


# Python's level names, accepted in any case ("info" is INFO).
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)]


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def http_url(url: str) -> SplitResult | None:
    """``url`` split, when it is an absolute http(s) URL with a host; else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    return parts


def is_plain_http_off_loopback(url: str) -> bool:
    """An ``http`` URL to anything but loopback: refused wherever TLS must protect what is fetched."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback_host(parts.hostname)


def weak_secret(value: str) -> bool:
    """A placeholder, or shorter than 32 characters: not a bearer credential anyone should rely on."""
    value = value.strip()
    return value in PLACEHOLDER_SECRETS or len(value) < 32


def decode_kek(text: str) -> bytes:
    """Decode a key-encryption key given as base64 (standard or url-safe) or 64 hex digits."""
    text = text.strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    try:
        raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be 32 random bytes, base64- or hex-encoded") from exc
    if len(raw) != 32:
        raise ValueError(f"must decode to 32 bytes, not {len(raw)}")
    return raw


def split_keks(text: str) -> list[str]:
    """Several key-encryption keys in one setting: separated by commas or white space."""
    return [part for part in re.split(r"[\s,]+", text) if part]


def new_kek() -> str:
    """A fresh key-encryption key in the form ``decode_kek`` reads."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) as (host, port); ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host, int(port)
