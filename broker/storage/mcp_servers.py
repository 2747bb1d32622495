"""Repository for registered MCP servers: every read gives ``ServerRow``s, every change is a statement here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import Select, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from broker.storage import changes
from broker.storage.hot import Tx
from broker.storage.models import McpServer
from broker.storage.prepared import Prepared
from broker.storage.search import contains


class ServerRow(NamedTuple):
    """A registered MCP server (an OAuth resource server), by its canonical resource URI."""

    id: str
    name: str
    description: str
    resource: str
    scopes: dict[str, str]  # scope -> what it allows
    default_scopes: list[str]
    tags: list[str]
    access_token_lifetime: int | None
    enabled: bool
    require_dpop: bool  # the broker issues tokens for this server only DPoP-bound (RFC 9449), never bearer
    created_at: dt.datetime
    updated_at: dt.datetime


_SERVERS = McpServer.__table__
_ROW = select(*(_SERVERS.c[name] for name in ServerRow._fields))
_EVERY = Prepared(_ROW.order_by(_SERVERS.c.id), row=ServerRow)
_LONGEST_LIFETIME = Prepared(select(func.max(_SERVERS.c.access_token_lifetime).label("longest")))


def get(session: Session, server_id: str) -> ServerRow | None:
    return _one(session, _ROW.where(_SERVERS.c.id == server_id))


def by_resource(session: Session, resource: str) -> ServerRow | None:
    return _one(session, _ROW.where(_SERVERS.c.resource == resource))


def list_all(session: Session) -> list[ServerRow]:
    """Every server, by id (a prebuilt statement: the registry's cache reads it every second)."""
    rows: list[ServerRow] = _EVERY.rows(session, {})
    return rows


async def list_all_hot(tx: Tx) -> list[ServerRow]:
    rows: list[ServerRow] = await tx.rows(_EVERY, {})
    return rows


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(_SERVERS)) or 0)


def longest_lifetime(session: Session) -> int | None:
    """The longest access token lifetime a server sets for itself (disabled servers too); None if none does."""
    value: int | None = _LONGEST_LIFETIME.scalar(session, {})
    return value


async def longest_lifetime_hot(tx: Tx) -> int | None:
    value: int | None = await tx.scalar(_LONGEST_LIFETIME, {})
    return value


def names(session: Session, server_ids: Collection[str]) -> dict[str, str]:
    """id -> name of those of ``server_ids`` that are registered."""
    if not server_ids:
        return {}
    found = session.execute(select(_SERVERS.c.id, _SERVERS.c.name).where(_SERVERS.c.id.in_(list(server_ids))))
    return {server_id: name for server_id, name in found}


def names_by_resource(session: Session, resources: Collection[str]) -> dict[str, str]:
    """resource URI -> name of those of ``resources`` that are registered."""
    if not resources:
        return {}
    found = session.execute(select(_SERVERS.c.resource, _SERVERS.c.name)
                            .where(_SERVERS.c.resource.in_(list(resources))))
    return {resource: name for resource, name in found}


def ids_named(session: Session, text: str, limit: int) -> list[str]:
    """Ids of up to ``limit`` servers whose name contains ``text`` (any case)."""
    return list(session.scalars(select(_SERVERS.c.id).where(contains(session, _SERVERS.c.name, text)).limit(limit)))


def add(session: Session, server: ServerRow) -> None:
    session.execute(insert(_SERVERS).values(server._asdict()))
    changes.wrote(session, _SERVERS.name)


def save(session: Session, server: ServerRow) -> None:
    """Store every column of ``server`` over the row with its id."""
    session.execute(update(_SERVERS).where(_SERVERS.c.id == bindparam("b_id"))
                    .values({name: value for name, value in server._asdict().items() if name != "id"}),
                    {"b_id": server.id})
    changes.wrote(session, _SERVERS.name)


def _one(session: Session, query: Select[*tuple[object, ...]]) -> ServerRow | None:
    row = session.execute(query).first()
    return None if row is None else ServerRow._make(row)
