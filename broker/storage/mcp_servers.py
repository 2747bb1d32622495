"""Repository for registered MCP servers."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.storage.hot import Tx
from broker.storage.models import McpServer
from broker.storage.prepared import Prepared


class ServerRow(NamedTuple):
    """What a token audience needs of a registered server."""

    id: str
    name: str
    resource: str
    scopes: dict[str, str]
    default_scopes: list[str]
    tags: list[str]
    access_token_lifetime: int | None
    enabled: bool


_SERVERS = McpServer.__table__
_EVERY = Prepared(select(*(_SERVERS.c[name] for name in ServerRow._fields)).order_by(_SERVERS.c.id), row=ServerRow)
_LONGEST_LIFETIME = Prepared(select(func.max(_SERVERS.c.access_token_lifetime).label("longest")))


def get(session: Session, server_id: str) -> McpServer | None:
    return session.get(McpServer, server_id)


def by_resource(session: Session, resource: str) -> McpServer | None:
    return session.scalar(select(McpServer).where(McpServer.resource == resource))


def list_all(session: Session) -> list[McpServer]:
    return list(session.scalars(select(McpServer).order_by(McpServer.id)))


def rows(session: Session) -> list[ServerRow]:
    return _EVERY.rows(session, {})


async def rows_hot(tx: Tx) -> list[ServerRow]:
    return await tx.rows(_EVERY, {})


def longest_lifetime(session: Session) -> int | None:
    """The longest access token lifetime a server sets for itself (disabled servers too); None if none does."""
    value: int | None = _LONGEST_LIFETIME.scalar(session, {})
    return value


async def longest_lifetime_hot(tx: Tx) -> int | None:
    value: int | None = await tx.scalar(_LONGEST_LIFETIME, {})
    return value


def add(session: Session, server: McpServer) -> None:
    session.add(server)
    session.flush()
