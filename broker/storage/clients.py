"""Repository for OAuth clients."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.storage.models import Client


def get(session: Session, client_id: str) -> Client | None:
    return session.get(Client, client_id)


def add(session: Session, client: Client) -> None:
    session.add(client)
    session.flush()


def list_all(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.created_at, Client.id)))


def count_registered_from(session: Session, address: str, since: dt.datetime) -> int:
    query = select(func.count()).select_from(Client).where(Client.registered_from == address,
                                                           Client.created_at >= since)
    return int(session.scalar(query) or 0)
