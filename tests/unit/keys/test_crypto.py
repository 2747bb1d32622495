"""AES-GCM encryption at rest under the key-encryption key."""

from __future__ import annotations

import os

import pytest

from broker.keys.crypto import DecryptionError, Encryptor


def test_round_trip() -> None:
    enc = Encryptor(os.urandom(32))
    blob = enc.encrypt(b"private key bytes", "signing-key:broker:k1:ES256")
    assert b"private key bytes" not in blob
    assert enc.decrypt(blob, "signing-key:broker:k1:ES256") == b"private key bytes"


def test_each_encryption_uses_a_fresh_nonce() -> None:
    enc = Encryptor(os.urandom(32))
    assert enc.encrypt(b"x", "ad") != enc.encrypt(b"x", "ad")


def test_wrong_key_is_refused() -> None:
    blob = Encryptor(os.urandom(32)).encrypt(b"secret", "ad")
    with pytest.raises(DecryptionError):
        Encryptor(os.urandom(32)).decrypt(blob, "ad")


def test_blob_moved_to_another_row_is_refused() -> None:
    enc = Encryptor(os.urandom(32))
    blob = enc.encrypt(b"secret", "signing-key:broker:k1:ES256")
    with pytest.raises(DecryptionError):
        enc.decrypt(blob, "signing-key:broker:k2:ES256")


@pytest.mark.parametrize("mutate", [lambda b: b[:-1] + bytes([b[-1] ^ 1]), lambda b: b"\x02" + b[1:],
                                    lambda b: b[:10]])
def test_tampered_or_truncated_blob_is_refused(mutate) -> None:
    enc = Encryptor(os.urandom(32))
    with pytest.raises(DecryptionError):
        enc.decrypt(mutate(enc.encrypt(b"secret", "ad")), "ad")


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        Encryptor(b"short")


def test_during_a_rotation_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = os.urandom(32), os.urandom(32)
    before = Encryptor(old).encrypt(b"sealed under the old key", "ad")
    rotating = Encryptor(new, previous=[old])
    assert rotating.decrypt(before, "ad") == b"sealed under the old key"
    after = rotating.encrypt(b"sealed under the new key", "ad")
    assert Encryptor(new).decrypt(after, "ad") == b"sealed under the new key"
    with pytest.raises(DecryptionError):
        Encryptor(old).decrypt(after, "ad")


def test_rewrap_moves_a_value_to_the_current_key_and_leaves_current_ones_alone() -> None:
    old, new = os.urandom(32), os.urandom(32)
    rotating = Encryptor.of([new, old])
    moved = rotating.rewrap(Encryptor(old).encrypt(b"v", "ad"), "ad")
    assert moved is not None and Encryptor(new).decrypt(moved, "ad") == b"v"
    assert rotating.rewrap(moved, "ad") is None
    with pytest.raises(DecryptionError):
        rotating.rewrap(Encryptor(os.urandom(32)).encrypt(b"v", "ad"), "ad")
    with pytest.raises(DecryptionError):
        rotating.rewrap(Encryptor(old).encrypt(b"v", "ad"), "other row")
