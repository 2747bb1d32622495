"""Audit: filter, page through, export as JSON lines, and the chain verification status."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from broker import audit
from broker.admin import queries
from broker.admin.sessions import VIEW, ConsoleUser
from broker.audit.chain import canonical
from broker.web.admin.common import ConsoleRoute, authenticate, console_call, parse_time, render
from broker.web.deps import State

router = APIRouter(prefix="/admin/audit", route_class=ConsoleRoute, include_in_schema=False)


def _filter(request: Request) -> queries.AuditFilter:
    q = request.query_params
    return queries.AuditFilter(user_id=(q.get("user") or "").strip(), server_id=(q.get("server") or "").strip(),
                               client_id=(q.get("client") or "").strip(), event_type=(q.get("type") or "").strip(),
                               since=parse_time(q.get("since") or ""), until=parse_time(q.get("until") or ""))


@router.get("")
async def events(request: Request, state: State) -> Response:
    where = _filter(request)
    try:
        before = int(request.query_params.get("before") or 0) or None
    except ValueError:
        before = None

    def view(db: Session, console: ConsoleUser) -> Response:
        rows, next_cursor = queries.audit_page(db, where, before)
        keep = {k: v for k, v in request.query_params.items() if k != "before" and v}
        return render(request, "admin/audit.html", console,
                      {"rows": rows, "next_cursor": next_cursor, "filters": keep, "where": where,
                       "raw": request.query_params, "event_types": queries.event_types(db), "nav": "audit"})

    return await console_call(request, state, VIEW, view)


@router.get("/verify")
async def verify(request: Request, state: State) -> Response:
    """Walk the whole chain (what ``broker audit verify --no-seal`` does; sealing is the sealer's job)."""
    def view(db: Session, console: ConsoleUser) -> Response:
        kek = state.settings.key_encryption_key()
        assert kek is not None
        result = audit.verify(db, audit.AuditKey(kek))
        return render(request, "admin/audit_verify.html", console, {"result": result, "nav": "audit"})

    return await console_call(request, state, VIEW, view)


@router.get("/export.jsonl")
async def export(request: Request, state: State) -> Response:
    """The filtered events, oldest first, one JSON object per line (the ``broker audit export`` format)."""
    where = _filter(request)
    with state.database.transaction() as db:
        authenticate(db, request, state, VIEW)

    def lines() -> Iterator[bytes]:
        with state.database.sessions() as db:
            for event in db.scalars(queries.audit_stream(db, where)):
                record = json.loads(canonical(event))
                record.update(occurred_at=event.occurred_at.isoformat(), chain_seq=event.chain_seq, hash=event.hash)
                yield (json.dumps(record, separators=(",", ":")) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"content-disposition": 'attachment; filename="audit.jsonl"',
                                      "cache-control": "no-store"})
