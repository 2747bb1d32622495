"""Repository for signing keys."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.storage.models import SigningKey


def list_keys(session: Session, purpose: str) -> list[SigningKey]:
    return list(session.scalars(select(SigningKey).where(SigningKey.purpose == purpose)
                                .order_by(SigningKey.activates_at)))


def all_keys(session: Session) -> list[SigningKey]:
    return list(session.scalars(select(SigningKey).order_by(SigningKey.purpose, SigningKey.activates_at)))


def add(session: Session, key: SigningKey) -> None:
    session.add(key)
    session.flush()
