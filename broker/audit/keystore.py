"""The audit chain's MAC key: generated once, stored sealed under the key-encryption key.

The chain must verify for as long as the log is kept, across any number of key-encryption-key
rotations, so its MAC key is not the KEK (nor derived from the current one): it is a secret of its own
in ``sealed_secrets``, re-encrypted by ``broker keys rewrap`` like the signing keys. A database whose
chain was begun before the key was stored gets, as the stored key, the one its head is MAC'd with:
derived from whichever configured KEK that is (docs/decisions, "the audit chain's MAC key").
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from broker.audit.chain import AuditKey
from broker.keys.crypto import Encryptor, sealed_secret_aad
from broker.storage import audit_chain, sealed
from broker.storage.models import utcnow

NAME = "audit-chain-mac"


class UnknownAuditKey(Exception):
    """The chain head is MAC'd with a key that no configured key-encryption key gives (one line)."""


class AuditKeys:
    """The key, loaded (and on first use stored) once per process: it never changes."""

    def __init__(self, encryptor: Encryptor, keks: Sequence[bytes]):
        self.encryptor, self.keks = encryptor, list(keks)
        self._key: AuditKey | None = None

    def get(self, session: Session) -> AuditKey:
        if self._key is None:
            self._key = load(session, self.encryptor, self.keks)
        return self._key


def load(session: Session, encryptor: Encryptor, keks: Sequence[bytes]) -> AuditKey:
    """The stored key; stored first (in the caller's transaction) when there is none yet."""
    stored = sealed.secret(session, NAME)
    if stored is None:
        first = _first_key(session, keks)
        sealed.add_secret_if_absent(session, NAME, encryptor.encrypt(first.material, sealed_secret_aad(NAME)),
                                    utcnow())
        stored = sealed.secret(session, NAME)
        assert stored is not None
    return AuditKey(encryptor.decrypt(stored, sealed_secret_aad(NAME)))


def _first_key(session: Session, keks: Sequence[bytes]) -> AuditKey:
    head = audit_chain.head(session)
    if head is None:
        return AuditKey.derived_from(keks[0])
    for kek in keks:
        key = AuditKey.derived_from(kek)
        if key.sealed(head):
            return key
    raise UnknownAuditKey("the audit chain is sealed with a key that no configured key-encryption key gives: list "
                          "the key-encryption key it was sealed with in keys.previous_key_encryption_keys")
