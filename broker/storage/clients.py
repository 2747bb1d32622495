"""Repository for OAuth clients."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, func, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from broker.storage.enums import ClientStatus
from broker.storage.hot import Tx
from broker.storage.models import Client
from broker.storage.prepared import Prepared
from broker.storage.statements import dialect_insert, insert_unless_present

# What a metadata-document client's row is made of when the token side stores it (all given: no defaults).
CIMD_COLUMNS = ["id", "name", "kind", "status", "secret_hash", "token_endpoint_auth_method", "extra_auth_methods",
                "redirect_uris", "grant_types", "jwks", "jwks_uri", "trusted", "scopes", "may_introspect",
                "resource_servers", "dpop_bound_access_tokens", "registered_from", "metadata", "created_at",
                "updated_at"]


class ClientRow(NamedTuple):
    """A client's columns, named as ``Client``'s attributes: what every token request reads."""

    id: str
    name: str
    kind: str
    status: str
    secret_hash: str | None
    token_endpoint_auth_method: str
    extra_auth_methods: list[str]
    redirect_uris: list[str]
    grant_types: list[str]
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    trusted: bool
    scopes: list[str]
    may_introspect: bool
    resource_servers: list[str]
    dpop_bound_access_tokens: bool  # RFC 9449 §5.2: the token endpoint issues it DPoP-bound tokens only
    registered_from: str | None
    metadata_: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


_TABLE = Client.__table__
_COLUMNS = select(*(column.label("metadata_") if column.name == "metadata" else column for column in _TABLE.c))
_RECORD = Prepared(_COLUMNS.where(_TABLE.c.id == bindparam("client_id")), row=ClientRow, memo=True)


@functools.cache
def _insert_if_absent(dialect: str) -> Prepared:
    return Prepared(dialect_insert(dialect, _TABLE).on_conflict_do_nothing(index_elements=["id"])
                    .returning(_TABLE.c.id), columns=CIMD_COLUMNS)


def get(session: Session, client_id: str) -> ClientRow | None:
    found: ClientRow | None = _RECORD.first(session, {"client_id": client_id})
    return found


async def record_hot(tx: Tx, client_id: str) -> ClientRow | None:
    found: ClientRow | None = await tx.first(_RECORD, {"client_id": client_id})
    return found


async def insert_if_absent_hot(tx: Tx, values: dict[str, Any]) -> bool:
    """``insert_if_absent`` for a metadata-document client: every column of ``CIMD_COLUMNS``."""
    return await tx.scalar(_insert_if_absent(tx.dialect), values) is not None


async def update_hot(tx: Tx, client_id: str, values: dict[str, Any], now: dt.datetime) -> None:
    """Set some columns of a client (named as ``ClientRow``'s fields), and its ``updated_at`` to ``now``."""
    statement, params = _update_of(client_id, values, now)
    await tx.rowcount(statement, params)


def update(session: Session, client_id: str, values: dict[str, Any], now: dt.datetime) -> None:
    """``update_hot`` in a session."""
    statement, params = _update_of(client_id, values, now)
    statement.rowcount(session, params)


def _update_of(client_id: str, values: dict[str, Any], now: dt.datetime) -> tuple[Prepared, dict[str, Any]]:
    values = {**values, "updated_at": now}
    return _update(tuple(sorted(values))), {"b_id": client_id, **{f"v_{k}": v for k, v in values.items()}}


@functools.cache
def _update(columns: tuple[str, ...]) -> Prepared:
    values = {_column(name).key: bindparam(f"v_{name}", type_=_column(name).type) for name in columns}
    return Prepared(sql_update(_TABLE).where(_TABLE.c.id == bindparam("b_id")).values(values))


def _column(field: str) -> Any:
    return _TABLE.c["metadata" if field == "metadata_" else field]


def add(session: Session, client: ClientRow) -> None:
    session.execute(insert(_TABLE).values({_column(name).key: value for name, value in client._asdict().items()}))


def insert_if_absent(session: Session, values: dict[str, Any]) -> bool:
    """Insert a client unless its id exists (another instance may store the same CIMD client at once)."""
    statement = insert_unless_present(session, Client, ["id"]).values(**values).returning(Client.id)
    return session.execute(statement).scalar() is not None


def list_all(session: Session) -> list[ClientRow]:
    return _rows(session, _COLUMNS.order_by(_TABLE.c.created_at, _TABLE.c.id))


def newest_first(session: Session, *, offset: int, limit: int,
                 status: ClientStatus | None = None) -> list[ClientRow]:
    """A slice of the clients (those with ``status``, when given), most recently registered first."""
    query = _COLUMNS if status is None else _COLUMNS.where(_TABLE.c.status == status)
    return _rows(session, query.order_by(_TABLE.c.created_at.desc(), _TABLE.c.id).offset(offset).limit(limit))


def _rows(session: Session, query: Select[*tuple[Any, ...]]) -> list[ClientRow]:
    return [ClientRow._make(row) for row in session.execute(query)]


def names(session: Session, client_ids: Collection[str]) -> dict[str, str]:
    """id -> name of those of ``client_ids`` that are registered."""
    if not client_ids:
        return {}
    found = session.execute(select(Client.id, Client.name).where(Client.id.in_(list(client_ids))))
    return {client_id: name for client_id, name in found}


def count_registered_from(session: Session, address: str, since: dt.datetime) -> int:
    query = select(func.count()).select_from(Client).where(Client.registered_from == address,
                                                           Client.created_at >= since)
    return int(session.scalar(query) or 0)
