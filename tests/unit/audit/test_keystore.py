"""The audit chain's MAC key: stored once, sealed under the key-encryption key, never derived from the current
one, so the chain verifies across key-encryption-key rotations; a chain begun by a release that derived it
keeps the key it was sealed with."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from broker import audit
from broker.admin.rewrap import rewrap
from broker.keys.crypto import Encryptor
from broker.storage import sealed
from broker.storage.db import Database
from tests.unit.audit.test_chain import write


def keys(*keks: bytes) -> audit.AuditKeys:
    return audit.AuditKeys(Encryptor.of(keks), keks)


def seal_and_verify(db: Database, store: audit.AuditKeys) -> audit.VerifyResult:
    with db.transaction() as session:
        audit.seal(session, store.get(session))
    with db.sessions() as session:
        return audit.verify(session, store.get(session))


def test_a_new_chain_stores_its_key_sealed(migrated: Database) -> None:
    kek = os.urandom(32)
    write(migrated, 3)
    assert seal_and_verify(migrated, keys(kek)).ok
    with migrated.sessions() as session:
        stored = sealed.secret(session, "audit-chain-mac")
    assert stored is not None and audit.AuditKey.derived_from(kek).material not in stored


def test_the_chain_verifies_after_the_kek_is_rotated_and_the_old_one_dropped(migrated: Database) -> None:
    old, new = os.urandom(32), os.urandom(32)
    write(migrated, 3)
    assert seal_and_verify(migrated, keys(old)).ok
    write(migrated, 2, start=3)
    assert seal_and_verify(migrated, keys(new, old)).ok  # rotating: events sealed meanwhile join the chain
    with migrated.transaction() as session:
        rewrap(session, Encryptor.of([new, old]), actor="test")
    result = seal_and_verify(migrated, keys(new))
    assert result.ok and result.checked == 6  # and the rewrap's own event
    with migrated.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET user_id = 'someone-else' WHERE chain_seq = 2"))
    with migrated.sessions() as session:
        broken = audit.verify(session, keys(new).get(session))
    assert not broken.ok and broken.broken_seq == 2


def test_a_chain_sealed_by_an_earlier_release_keeps_its_key_through_a_rotation(migrated: Database) -> None:
    old, new = os.urandom(32), os.urandom(32)
    write(migrated, 4)
    with migrated.transaction() as session:  # as releases that derived the key from the KEK sealed it
        audit.seal(session, audit.AuditKey.derived_from(old))
    write(migrated, 1, start=4)
    assert seal_and_verify(migrated, keys(new, old)).ok  # the first start after the rotation finds the old key
    with migrated.transaction() as session:
        rewrap(session, Encryptor.of([new, old]), actor="test")
    assert seal_and_verify(migrated, keys(new)).ok


def test_a_chain_no_configured_kek_sealed_is_refused_in_one_line(migrated: Database) -> None:
    write(migrated, 2)
    with migrated.transaction() as session:
        audit.seal(session, audit.AuditKey.derived_from(os.urandom(32)))
    with migrated.transaction() as session, pytest.raises(audit.UnknownAuditKey, match="previous_key_encryption"):
        keys(os.urandom(32)).get(session)
