"""Repository for signing keys: every read gives ``KeyRow``s, every change is a statement here."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from broker.storage import changes
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
_ROW = select(*(_KEYS.c[name] for name in KeyRow._fields))
_OF_PURPOSE = Prepared(_ROW.where(_KEYS.c.purpose == bindparam("purpose")).order_by(_KEYS.c.activates_at), row=KeyRow)


def list_keys(session: Session, purpose: str) -> list[KeyRow]:
    """The purpose's keys by activation time (``rows_of``)."""
    return rows_of(session, purpose)


def lock_keys(session: Session, purpose: str) -> None:
    """Hold the purpose's keys until the transaction ends: a write that changes nothing takes the rows'
    locks on PostgreSQL and the write lock on SQLite, so what is read next is what a rival committed."""
    session.execute(update(SigningKey).where(SigningKey.purpose == purpose)
                    .values(retired_at=SigningKey.retired_at).execution_options(synchronize_session=False))


def rows_of(session: Session, purpose: str) -> list[KeyRow]:
    rows: list[KeyRow] = _OF_PURPOSE.rows(session, {"purpose": purpose})
    return rows


async def rows_of_hot(tx: Tx, purpose: str) -> list[KeyRow]:
    rows: list[KeyRow] = await tx.rows(_OF_PURPOSE, {"purpose": purpose})
    return rows


def all_keys(session: Session) -> list[KeyRow]:
    """Every key, by purpose then activation time."""
    return [KeyRow._make(row) for row in session.execute(_ROW.order_by(_KEYS.c.purpose, _KEYS.c.activates_at))]


def add(session: Session, key: KeyRow) -> None:
    session.execute(insert(_KEYS).values(key._asdict()))
    changes.wrote(session, _KEYS.name)


def retire(session: Session, kid: str, at: dt.datetime) -> None:
    """The key stops signing at ``at`` (and is published a while longer: ``keys.schedule``)."""
    session.execute(update(_KEYS).where(_KEYS.c.kid == kid).values(retired_at=at))
    changes.wrote(session, _KEYS.name)
