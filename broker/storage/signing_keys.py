"""Repository for signing keys."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from broker.storage.hot import Tx
from broker.storage.models import SigningKey
from broker.storage.prepared import Prepared


class KeyRow(NamedTuple):
    """A signing key's row, private half still encrypted."""

    kid: str
    purpose: str
    algorithm: str
    public_jwk: dict[str, Any]
    private_key_encrypted: bytes
    created_at: dt.datetime
    activates_at: dt.datetime
    retired_at: dt.datetime | None


_KEYS = SigningKey.__table__
_OF_PURPOSE = Prepared(select(*(_KEYS.c[name] for name in KeyRow._fields))
                       .where(_KEYS.c.purpose == bindparam("purpose")).order_by(_KEYS.c.activates_at), row=KeyRow)


def list_keys(session: Session, purpose: str) -> list[SigningKey]:
    return list(session.scalars(select(SigningKey).where(SigningKey.purpose == purpose)
                                .order_by(SigningKey.activates_at)))


def lock_keys(session: Session, purpose: str) -> None:
    """Hold the purpose's keys until the transaction ends: a write that changes nothing takes the rows'
    locks on PostgreSQL and the write lock on SQLite, so what is read next is what a rival committed."""
    session.execute(update(SigningKey).where(SigningKey.purpose == purpose)
                    .values(retired_at=SigningKey.retired_at).execution_options(synchronize_session=False))


def rows_of(session: Session, purpose: str) -> list[KeyRow]:
    return _OF_PURPOSE.rows(session, {"purpose": purpose})


async def rows_of_hot(tx: Tx, purpose: str) -> list[KeyRow]:
    return await tx.rows(_OF_PURPOSE, {"purpose": purpose})


def all_keys(session: Session) -> list[SigningKey]:
    return list(session.scalars(select(SigningKey).order_by(SigningKey.purpose, SigningKey.activates_at)))


def add(session: Session, key: SigningKey) -> None:
    session.add(key)
    session.flush()
