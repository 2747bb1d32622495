"""The key ring against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import os

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from broker.keys.crypto import DecryptionError, Encryptor
from broker.keys.ring import KeyRing, thumbprint
from broker.storage import signing_keys
from broker.storage.db import Database

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GRACE = dt.timedelta(seconds=360)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing(Encryptor(os.urandom(32)))


def test_first_start_creates_one_es256_key_and_later_starts_do_not(migrated: Database, ring: KeyRing) -> None:
    with migrated.transaction() as session:
        created = ring.ensure(session, T0)
        assert created is not None and created.algorithm == "ES256"
        assert ring.ensure(session, T0 + HOUR) is None
    with migrated.sessions() as session:
        assert len(signing_keys.list_keys(session, "broker")) == 1


def test_private_key_is_encrypted_at_rest(migrated: Database, ring: KeyRing) -> None:
    with migrated.transaction() as session:
        row = ring.ensure(session, T0)
        active = ring.active(session, T0)
    der = active.private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
    with migrated.sessions() as session:
        stored = signing_keys.list_keys(session, "broker")[0].private_key_encrypted
    assert der not in stored and der[-32:] not in stored
    assert row.kid == thumbprint(row.public_jwk)
    assert "d" not in row.public_jwk  # the public JWK carries no private part


def test_signed_token_verifies_with_published_jwk(migrated: Database, ring: KeyRing) -> None:
    with migrated.transaction() as session:
        ring.ensure(session)
        token = ring.active(session).sign({"sub": "u1"}, typ="at+jwt")
        jwks = ring.jwks(session, GRACE)
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    key = jwt.PyJWK(jwk).key
    assert header["typ"] == "at+jwt"
    assert jwt.decode(token, key, algorithms=["ES256"])["sub"] == "u1"


def test_rotation_publishes_at_once_and_signs_after_the_delay(migrated: Database, ring: KeyRing) -> None:
    with migrated.transaction() as session:
        first = ring.ensure(session, T0)
        second = ring.rotate(session, HOUR, now=T0 + HOUR)
        published = {k["kid"] for k in ring.jwks(session, GRACE, now=T0 + HOUR)["keys"]}
        assert published == {first.kid, second.kid}
        assert ring.active(session, T0 + HOUR + HOUR / 2).kid == first.kid
        assert ring.active(session, T0 + 2 * HOUR).kid == second.kid
        # the retired key stays published for the longest token lifetime, then leaves
        assert first.kid in {k["kid"] for k in ring.jwks(session, GRACE, now=T0 + 2 * HOUR + GRACE / 2)["keys"]}
        assert first.kid not in {k["kid"] for k in ring.jwks(session, GRACE, now=T0 + 2 * HOUR + GRACE)["keys"]}


def kids(ring: KeyRing, session, now: dt.datetime) -> set[str]:
    return {k["kid"] for k in ring.jwks(session, GRACE, now=now)["keys"]}


def test_scheduled_rotation_publishes_ahead_and_the_old_key_leaves_once_its_tokens_expired(
        migrated: Database, ring: KeyRing) -> None:
    day, second = dt.timedelta(days=1), dt.timedelta(seconds=1)
    with migrated.transaction() as session:
        first = ring.ensure(session, T0)
        assert ring.rotate_if_due(session, day, HOUR, now=T0 + day - HOUR - second) is None
        second_key = ring.rotate_if_due(session, day, HOUR, now=T0 + day - HOUR)
        assert second_key is not None and second_key.activates_at == T0 + day
        assert ring.rotate_if_due(session, day, HOUR, now=T0 + day - HOUR) is None  # once
        assert kids(ring, session, T0 + day - HOUR) == {first.kid, second_key.kid}
        assert ring.active(session, T0 + day - second).kid == first.kid
        assert ring.active(session, T0 + day).kid == second_key.kid
        assert kids(ring, session, T0 + day + GRACE - second) == {first.kid, second_key.kid}
        assert kids(ring, session, T0 + day + GRACE) == {second_key.kid}
        third = ring.rotate_if_due(session, day, HOUR, now=T0 + 2 * day - HOUR)
        assert third is not None and third.activates_at == T0 + 2 * day


def test_instances_rotating_at_once_add_one_key(migrated: Database, ring: KeyRing) -> None:
    import threading

    day = dt.timedelta(days=1)
    with migrated.transaction() as session:
        ring.ensure(session, T0)
    start = threading.Barrier(2)

    def instance() -> None:
        start.wait()
        with migrated.transaction() as session:  # the second waits for the first's lock, then finds its key
            ring.rotate_if_due(session, day, HOUR, now=T0 + day)

    threads = [threading.Thread(target=instance) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with migrated.sessions() as session:
        assert len(signing_keys.list_keys(session, "broker")) == 2


def test_rs256_is_optional(migrated: Database) -> None:
    ring = KeyRing(Encryptor(os.urandom(32)), algorithm="RS256", rsa_key_size=2048)
    with migrated.transaction() as session:
        row = ring.ensure(session)
        token = ring.active(session).sign({"sub": "u"}, typ="at+jwt")
    assert row.public_jwk["kty"] == "RSA" and row.public_jwk["alg"] == "RS256"
    assert jwt.decode(token, jwt.PyJWK(row.public_jwk).key, algorithms=["RS256"])["sub"] == "u"


def test_wrong_kek_is_detected_before_use(migrated: Database, ring: KeyRing) -> None:
    with migrated.transaction() as session:
        ring.ensure(session)
    other = KeyRing(Encryptor(os.urandom(32)))
    with migrated.sessions() as session, pytest.raises(DecryptionError):
        other.verify_kek(session)


def test_purposes_are_separate(migrated: Database) -> None:
    enc = Encryptor(os.urandom(32))
    broker_ring, idp_ring = KeyRing(enc, "broker"), KeyRing(enc, "testidp")
    with migrated.transaction() as session:
        a, b = broker_ring.ensure(session), idp_ring.ensure(session)
        assert {k["kid"] for k in broker_ring.jwks(session, GRACE)["keys"]} == {a.kid}
        assert {k["kid"] for k in idp_ring.jwks(session, GRACE)["keys"]} == {b.kid}
