"""DPoP nonces: stateless, accepted by any instance sharing the key, refused once expired or altered."""

from __future__ import annotations

from broker.oauth.dpop_nonces import DpopNonces, nonce_key

KEY = nonce_key(b"k" * 32)
NOW = 1_800_000_000.0


def test_a_nonce_issued_by_one_instance_is_accepted_by_another() -> None:
    issued = DpopNonces(KEY, 300).issue(NOW)
    assert DpopNonces(KEY, 300).accepts(issued, NOW + 299)


def test_a_nonce_past_its_lifetime_is_refused() -> None:
    nonces = DpopNonces(KEY, 300)
    assert not nonces.accepts(nonces.issue(NOW), NOW + 301)


def test_a_nonce_from_another_key_or_altered_is_refused() -> None:
    issued = DpopNonces(KEY, 300).issue(NOW)
    assert not DpopNonces(nonce_key(b"j" * 32), 300).accepts(issued, NOW)
    altered = ("A" if issued[0] != "A" else "B") + issued[1:]
    assert not DpopNonces(KEY, 300).accepts(altered, NOW)


def test_a_nonce_from_the_future_is_refused() -> None:
    nonces = DpopNonces(KEY, 300)
    assert not nonces.accepts(nonces.issue(NOW + 60), NOW)


def test_malformed_nonces_are_refused() -> None:
    nonces = DpopNonces(KEY, 300)
    for value in (None, 1, "", "x" * 32, "+" * 32, nonces.issue(NOW) + "A", "é" * 32):
        assert not nonces.accepts(value, NOW)
