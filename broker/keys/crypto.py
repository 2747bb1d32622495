"""Encryption at rest under the key-encryption key (KEK): AES-256-GCM with associated data.

The associated data binds a ciphertext to what it belongs to (a key id, an identity id),
so a ciphertext copied into another row fails to decrypt instead of being used there; the
functions at the end name it for each kind of sealed value, in one place.
Blob layout: version byte (1) | 12-byte nonce | ciphertext+tag.

Several KEKs: the first encrypts, every one decrypts (the old ones while a rotation is under
way, until ``broker keys rewrap`` has re-encrypted everything under the first).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """The ciphertext was not made with any configured key-encryption key (or for this associated data)."""


class Encryptor:
    def __init__(self, kek: bytes, previous: Sequence[bytes] = ()):
        if any(len(key) != 32 for key in (kek, *previous)):
            raise ValueError("the key-encryption key must be 32 bytes")
        self._aeads = [AESGCM(key) for key in (kek, *previous)]

    @classmethod
    def of(cls, keks: Sequence[bytes]) -> Encryptor:
        """The current KEK first (``Settings.key_encryption_keys``)."""
        return cls(keks[0], keks[1:])

    def encrypt(self, plaintext: bytes, associated_data: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aeads[0].encrypt(nonce, plaintext, associated_data.encode())

    def decrypt(self, blob: bytes, associated_data: str) -> bytes:
        return self._open(blob, associated_data)[0]

    def rewrap(self, blob: bytes, associated_data: str) -> bytes | None:
        """None when the current KEK opens ``blob``; else the plaintext sealed anew under the current KEK."""
        plaintext, by_current = self._open(blob, associated_data)
        return None if by_current else self.encrypt(plaintext, associated_data)

    def _open(self, blob: bytes, associated_data: str) -> tuple[bytes, bool]:
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
            raise DecryptionError("not an encrypted blob of a known version")
        nonce, body = blob[1:1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES:]
        for i, aead in enumerate(self._aeads):
            try:
                return aead.decrypt(nonce, body, associated_data.encode()), i == 0
            except InvalidTag:
                continue
        raise DecryptionError("wrong key-encryption key, or the data was altered")


def derived_key(kek: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose (the sign-in's CSRF MACs, DPoP nonces), the same at every instance that
    holds ``kek``: SHA-256 over the purpose, a NUL and the KEK."""
    return hashlib.sha256(purpose.encode() + b"\0" + kek).digest()


def signing_key_aad(purpose: str, kid: str, algorithm: str) -> str:
    return f"signing-key:{purpose}:{kid}:{algorithm}"


def upstream_refresh_token_aad(identity_id: str) -> str:
    return f"upstream-refresh-token:{identity_id}"


def upstream_verifier_aad(pending_id: str) -> str:
    """The PKCE verifier of a sign-in in progress at the upstream IdP."""
    return f"pending-authorization:{pending_id}"


def sealed_secret_aad(name: str) -> str:
    return f"sealed-secret:{name}"
