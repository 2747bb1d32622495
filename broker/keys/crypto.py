"""Encryption at rest under the key-encryption key (KEK): AES-256-GCM with associated data.

The associated data binds a ciphertext to what it belongs to (a key id, an identity id),
so a ciphertext copied into another row fails to decrypt instead of being used there.
Blob layout: version byte (1) | 12-byte nonce | ciphertext+tag.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """The ciphertext was not made with this key-encryption key (or for this associated data)."""


class Encryptor:
    def __init__(self, kek: bytes):
        if len(kek) != 32:
            raise ValueError("the key-encryption key must be 32 bytes")
        self._aead = AESGCM(kek)

    def encrypt(self, plaintext: bytes, associated_data: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated_data.encode())

    def decrypt(self, blob: bytes, associated_data: str) -> bytes:
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
            raise DecryptionError("not an encrypted blob of a known version")
        nonce, body = blob[1:1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, associated_data.encode())
        except InvalidTag:
            raise DecryptionError("wrong key-encryption key, or the data was altered") from None
