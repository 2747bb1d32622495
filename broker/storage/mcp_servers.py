"""Repository for registered MCP servers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.storage.models import McpServer


def get(session: Session, server_id: str) -> McpServer | None:
    return session.get(McpServer, server_id)


def by_resource(session: Session, resource: str) -> McpServer | None:
    return session.scalar(select(McpServer).where(McpServer.resource == resource))


def list_all(session: Session) -> list[McpServer]:
    return list(session.scalars(select(McpServer).order_by(McpServer.id)))


def add(session: Session, server: McpServer) -> None:
    session.add(server)
    session.flush()
