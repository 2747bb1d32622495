"""DPoP nonces (RFC 9449 §8) without state: a MAC'd issue time, so any broker instance accepts another's.

A nonce is base64url(8-byte issue time in seconds | the first 16 bytes of HMAC-SHA256 over it). The MAC key
is derived from the key-encryption key every instance holds, as the sign-in's CSRF key is; a nonce made
under a KEK that is no longer first is refused, and the client retries with the fresh one it is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct

from broker.keys.crypto import derived_key

_MAC_BYTES = 16
_LENGTH = 8 + _MAC_BYTES
_FUTURE_SLACK = 5  # seconds: instances' clocks differ a little
_SHAPE = re.compile(r"^[A-Za-z0-9_-]{32}$")


def nonce_key(kek: bytes) -> bytes:
    return derived_key(kek, "broker-dpop-nonce")


class DpopNonces:
    def __init__(self, key: bytes, lifetime: int):
        self._key = key
        self.lifetime = lifetime

    def issue(self, now: float) -> str:
        issued = struct.pack(">Q", int(now))
        return base64.urlsafe_b64encode(issued + self._mac(issued)).rstrip(b"=").decode()

    def accepts(self, nonce: object, now: float) -> bool:
        """Whether ``nonce`` was issued by an instance of this broker no more than ``lifetime`` seconds ago."""
        if not isinstance(nonce, str) or not _SHAPE.match(nonce):
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce)
        except (binascii.Error, ValueError):
            return False
        if len(raw) != _LENGTH or not hmac.compare_digest(raw[8:], self._mac(raw[:8])):
            return False
        issued: int = struct.unpack(">Q", raw[:8])[0]
        return now - self.lifetime <= issued <= now + _FUTURE_SLACK

    def _mac(self, issued: bytes) -> bytes:
        return hmac.new(self._key, b"dpop-nonce\0" + issued, hashlib.sha256).digest()[:_MAC_BYTES]
