"""Repository for OAuth clients."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from broker.storage.models import Client
from broker.storage.prepared import Prepared


def get(session: Session, client_id: str) -> Client | None:
    return session.get(Client, client_id)


_TABLE = Client.__table__
_RECORD = Prepared(select(*(column.label("metadata_") if column.name == "metadata" else column for column in _TABLE.c))
                   .where(_TABLE.c.id == bindparam("client_id")))


def record(session: Session, client_id: str) -> Any:
    """The client's columns (named as ``Client``'s attributes), read-only: what every token request needs,
    without the ORM's cost of an object."""
    return _RECORD.first(session, {"client_id": client_id})


def add(session: Session, client: Client) -> None:
    session.add(client)
    session.flush()


def insert_if_absent(session: Session, values: dict[str, Any]) -> bool:
    """Insert a client unless its id exists (another instance may store the same CIMD client at once)."""
    insert_fn = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (insert_fn(Client).values(**values).on_conflict_do_nothing(index_elements=["id"])
                 .returning(Client.id))
    return session.execute(statement).scalar() is not None


def list_all(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.created_at, Client.id)))


def count_registered_from(session: Session, address: str, since: dt.datetime) -> int:
    query = select(func.count()).select_from(Client).where(Client.registered_from == address,
                                                           Client.created_at >= since)
    return int(session.scalar(query) or 0)
