"""Stateless codes and refresh tokens, and the per-process single-use set."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from broker.keys.crypto import Encryptor
from broker.testidp.errors import InvalidGrant
from broker.testidp.replay import ReplayStoreFull, UsedCodes
from broker.testidp.sealed import AuthorizationCode, RefreshGrant, Sealer

CODE = AuthorizationCode(client_id="c", redirect_uri="http://127.0.0.1/cb", username="alice", nonce="n-1",
                         code_challenge="x" * 43, scope=("openid", "email"), auth_time=100, exp=160)
REFRESH = RefreshGrant(client_id="c", username="alice", scope=("openid", "offline_access"), auth_time=100,
                       exp=1000)


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(Encryptor(b"k" * 32))


def test_code_round_trip(sealer: Sealer) -> None:
    sealed = sealer.seal_code(CODE)
    opened = sealer.open_code(sealed)
    assert opened.value == CODE
    assert opened.digest == sealer.open_code(sealed).digest


def test_each_code_is_a_different_string(sealer: Sealer) -> None:
    assert sealer.seal_code(CODE) != sealer.seal_code(CODE)


def test_tampered_code_is_rejected(sealer: Sealer) -> None:
    raw = bytearray(base64.urlsafe_b64decode(sealer.seal_code(CODE) + "=="))
    raw[20] ^= 0x01
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidGrant, match="altered"):
        sealer.open_code(tampered)


@pytest.mark.parametrize("text", ["", "not base64!", "eyJhbGciOiJub25lIn0.e30.", "AAAA"])
def test_garbage_is_rejected_as_invalid_grant(sealer: Sealer, text: str) -> None:
    with pytest.raises(InvalidGrant):
        sealer.open_code(text)


def test_non_canonical_base64_is_rejected(sealer: Sealer) -> None:
    sealed = sealer.seal_code(CODE)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sealed[-1])
    # When the length leaves spare bits, a sibling character decodes to the same bytes.
    variants = [sealed[:-1] + alphabet[last ^ bit] for bit in (1, 2, 4, 8)]
    for variant in variants:
        with pytest.raises(InvalidGrant):
            sealer.open_code(variant)


def test_code_sealed_under_another_key_is_rejected(sealer: Sealer) -> None:
    other = Sealer(Encryptor(b"o" * 32))
    with pytest.raises(InvalidGrant):
        sealer.open_code(other.seal_code(CODE))


def test_refresh_token_never_opens_as_a_code_or_back(sealer: Sealer) -> None:
    with pytest.raises(InvalidGrant):
        sealer.open_code(sealer.seal_refresh(REFRESH))
    with pytest.raises(InvalidGrant):
        sealer.open_refresh(sealer.seal_code(CODE))
    assert sealer.open_refresh(sealer.seal_refresh(REFRESH)).value == REFRESH


def test_used_codes_claim_once_until_forgotten() -> None:
    used = UsedCodes()
    assert used.claim(b"d1", forget_after=100, now=0)
    assert not used.claim(b"d1", forget_after=100, now=50)
    assert used.claim(b"d1", forget_after=300, now=150)  # the code itself expired long before


def test_used_codes_fail_closed_when_full() -> None:
    used = UsedCodes(max_entries=2)
    assert used.claim(b"a", 100, 0) and used.claim(b"b", 100, 0)
    with pytest.raises(ReplayStoreFull):
        used.claim(b"c", 100, 0)
    assert used.claim(b"c", 200, 100)  # once the others expired there is room again
    assert len(used) == 1


def test_sealed_values_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CODE.username = "mallory"  # type: ignore[misc]
