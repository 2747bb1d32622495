"""``broker keys rewrap``: re-encrypt under the current key-encryption key every value sealed under a
previous one (signing keys, upstream refresh tokens kept or queued for revocation, sign-ins in progress,
the broker's own secrets), so the previous keys can be removed from the configuration. One
transaction: all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from broker import audit
from broker.keys.crypto import (
    DecryptionError,
    Encryptor,
    sealed_secret_aad,
    signing_key_aad,
    upstream_refresh_token_aad,
    upstream_verifier_aad,
)
from broker.storage import sealed

# What each kind of sealed value is bound to (its associated data), by ``sealed.SEALED`` kind.
BOUND_TO: dict[str, Callable[[Any], str]] = {
    "signing keys": lambda row: signing_key_aad(row.purpose, row.kid, row.algorithm),
    "upstream refresh tokens": lambda row: upstream_refresh_token_aad(row.id),
    "upstream refresh tokens to revoke": lambda row: upstream_refresh_token_aad(row.identity_id),
    "sign-ins in progress": lambda row: upstream_verifier_aad(row.id),
    "sealed secrets": lambda row: sealed_secret_aad(row.name),
}


class Unreadable(Exception):
    """A sealed value that no configured key-encryption key opens (one line; nothing was changed)."""


@dataclass(frozen=True)
class Rewrapped:
    rewrapped: dict[str, int] = field(default_factory=dict)  # by kind: values re-encrypted now
    current: int = 0  # values that were under the current key already


def rewrap(session: Session, encryptor: Encryptor, actor: str) -> Rewrapped:
    result = Rewrapped()
    for column in sealed.SEALED:
        bound_to = BOUND_TO[column.kind]
        result.rewrapped[column.kind] = 0
        for row in list(sealed.rows(session, column)):  # read first: no update while a cursor is open
            blob = _rewrapped(encryptor, column, row, bound_to(row))
            if blob is None:
                result = Rewrapped(result.rewrapped, result.current + 1)
                continue
            sealed.replace(session, column, row, blob)
            result.rewrapped[column.kind] += 1
    audit.record(session, "keys.rewrapped", actor=actor, data={"rewrapped": result.rewrapped,
                                                               "current": result.current})
    return result


def _rewrapped(encryptor: Encryptor, column: sealed.SealedColumn, row: Any, bound_to: str) -> bytes | None:
    try:
        return encryptor.rewrap(getattr(row, column.blob), bound_to)
    except DecryptionError:
        which = ", ".join(f"{name} {getattr(row, name)}" for name in column.key)
        raise Unreadable(f"{column.kind}: {which}: no configured key-encryption key opens it (is an old key "
                         "missing from keys.previous_key_encryption_keys?)") from None
