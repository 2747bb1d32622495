"""Everything stored encrypted under the key-encryption key, found in one place: the broker's own sealed
secrets, and for a KEK rotation (``broker keys rewrap``) every column that holds a sealed value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Row, Table, and_, func, select, update
from sqlalchemy.orm import Session

from broker.storage.models import (
    PendingAuthorization,
    SealedSecret,
    SigningKey,
    UpstreamIdentity,
    UpstreamRevocation,
)
from broker.storage.statements import insert_unless_present


def secret(session: Session, name: str) -> bytes | None:
    return session.scalar(select(SealedSecret.value_encrypted).where(SealedSecret.name == name))


def add_secret_if_absent(session: Session, name: str, value_encrypted: bytes, now: dt.datetime) -> None:
    """Two processes adding the same secret at once: the first one's stays (read it back with ``secret``)."""
    session.execute(insert_unless_present(session, SealedSecret.__table__)
                    .values(name=name, value_encrypted=value_encrypted, created_at=now))


@dataclass(frozen=True)
class SealedColumn:
    """A column of sealed values: its table, the columns naming a row, and those its associated data names."""

    kind: str
    table: Table
    blob: str
    key: tuple[str, ...]
    bound_to: tuple[str, ...]

    def column(self, name: str) -> Column[Any]:
        return self.table.c[name]


SEALED = (
    SealedColumn("signing keys", SigningKey.__table__, "private_key_encrypted", ("kid",),
                 ("purpose", "kid", "algorithm")),
    SealedColumn("upstream refresh tokens", UpstreamIdentity.__table__, "refresh_token_encrypted", ("id",), ("id",)),
    SealedColumn("upstream refresh tokens to revoke", UpstreamRevocation.__table__, "token_encrypted", ("id",),
                 ("identity_id",)),
    SealedColumn("sign-ins in progress", PendingAuthorization.__table__, "upstream_verifier_encrypted", ("id",),
                 ("id",)),
    SealedColumn("sealed secrets", SealedSecret.__table__, "value_encrypted", ("name",), ("name",)),
)


def rows(session: Session, sealed: SealedColumn, batch: int = 500) -> Iterator[Row[Any]]:
    """Every row holding a sealed value: (blob, *key, *bound_to), ``batch`` at a time."""
    blob = sealed.column(sealed.blob)
    names = dict.fromkeys((*sealed.key, *sealed.bound_to))
    query = select(blob, *(sealed.column(n) for n in names)).where(and_(blob.is_not(None), func.length(blob) > 0))
    yield from session.execute(query.execution_options(yield_per=batch))


def replace(session: Session, sealed: SealedColumn, row: Row[Any], blob: bytes) -> None:
    where = [sealed.column(n) == getattr(row, n) for n in sealed.key]
    session.execute(update(sealed.table).where(*where).values({sealed.blob: blob}))
