"""Access: the matrix of who can reach which MCP server with which scopes and why, filtered and paged,
exported as CSV (``broker.registry.policies.matrix``, as ``broker policy matrix`` and the admin API)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from broker.admin.sessions import VIEW, ConsoleUser
from broker.policy import Matrix
from broker.registry import policies
from broker.storage import mcp_servers
from broker.web.admin.common import ConsoleRoute, console_call, page_number, render
from broker.web.deps import State
from broker.web.downloads import csv_response

router = APIRouter(prefix="/admin/access", route_class=ConsoleRoute, include_in_schema=False)
ROWS_PER_PAGE = 100
FILTERS = ("server", "tag", "group", "user")


def _filter(request: Request) -> policies.MatrixFilter:
    q = request.query_params
    return policies.MatrixFilter(**{name: (q.get(name) or "").strip()[:320] for name in FILTERS})


def _matrix(db: Session, where: policies.MatrixFilter, rows: slice | None = None) -> tuple[Matrix, int]:
    return policies.matrix(db, policies.StoredPolicy().compiled(db), where, rows=rows)


@router.get("")
async def access(request: Request, state: State) -> Response:
    where, number = _filter(request), page_number(request.query_params.get("page"))

    def view(db: Session, console: ConsoleUser) -> Response:
        start = (number - 1) * ROWS_PER_PAGE
        result, total = _matrix(db, where, slice(start, start + ROWS_PER_PAGE))  # the page's cells only
        rows = list(zip(result.rows, result.cells, strict=True))
        servers = [row for row in mcp_servers.list_all(db) if row.enabled]
        return render(request, "admin/access.html", console, {
            "matrix": result, "rows": rows, "page": number, "has_next": start + ROWS_PER_PAGE < total,
            "total": total, "where": where, "servers": servers,
            "names": {row.id: row.name for row in servers}, "tags": sorted({t for s in servers for t in s.tags}),
            "filters": {name: getattr(where, name) for name in FILTERS if getattr(where, name)}, "nav": "access"})

    return await console_call(request, state, VIEW, view)


@router.get(".csv")
async def export(request: Request, state: State) -> Response:
    """Every row of the filtered matrix, one line per subject and server."""
    where = _filter(request)

    def view(db: Session, console: ConsoleUser) -> Response:
        return csv_response(_matrix(db, where)[0].csv_rows(), "access.csv")

    return await console_call(request, state, VIEW, view)
