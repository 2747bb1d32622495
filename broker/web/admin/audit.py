"""Audit: search (by names, outcome, free text, time), the denials view, JSON-lines export of the search,
and the chain verification status."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from broker import audit
from broker.admin import audit_search, names
from broker.admin.sessions import VIEW, ConsoleUser
from broker.audit.export import json_line
from broker.web.admin.common import ConsoleRoute, authenticate, console_call, parse_time, render
from broker.web.deps import State
from broker.web.headers import NO_STORE

router = APIRouter(prefix="/admin/audit", route_class=ConsoleRoute, include_in_schema=False)
FIELDS = ("user", "client", "server", "type", "outcome", "q", "since", "until")
TIMES = {"since": "From", "until": "Until"}


def _query(request: Request, denials: bool = False) -> tuple[audit_search.AuditQuery, dict[str, str], list[str]]:
    """The search the query string asks for, the fields as typed (to keep in the form and links), and the
    problems with them (a time that is not one)."""
    typed = {name: (request.query_params.get(name) or "").strip()[:audit_search.MAX_TEXT] for name in FIELDS}
    problems = [f"{label}: {typed[name]!r} is not a date and time (for example 2026-11-26T14:00, UTC)"
                for name, label in TIMES.items() if typed[name] and parse_time(typed[name]) is None]
    query = audit_search.AuditQuery(user=typed["user"], client=typed["client"], server=typed["server"],
                                    event_type=typed["type"], outcome=typed["outcome"], text=typed["q"],
                                    since=parse_time(typed["since"]), until=parse_time(typed["until"]),
                                    denials=denials)
    return query, {k: v for k, v in typed.items() if v}, problems


def _cursor(request: Request) -> int | None:
    try:
        return int(request.query_params.get("before") or 0) or None
    except ValueError:
        return None


async def _page(request: Request, state: State, denials: bool) -> Response:
    query, typed, problems = _query(request, denials)
    before = _cursor(request)

    def view(db: Session, console: ConsoleUser) -> Response:
        search = audit_search.resolve(db, query)
        found = audit_search.Page([], None) if problems else audit_search.page(db, search, before)
        rows = found.rows
        return render(request, "admin/audit.html", console, {
            "rows": rows, "next_cursor": found.next_before, "searched_from": found.searched_from,
            "window": audit_search.TEXT_WINDOW, "filters": typed, "raw": typed, "problems": problems,
            "unmatched": search.unmatched, "names": names.for_events(db, rows), "denials": denials,
            "event_types": audit_search.event_types(db), "outcomes": list(audit_search.OUTCOMES),
            "base": "/admin/audit/denials" if denials else "/admin/audit", "nav": "audit"},
            400 if problems else 200)

    return await console_call(request, state, VIEW, view)


@router.get("")
async def events(request: Request, state: State) -> Response:
    return await _page(request, state, denials=False)


@router.get("/denials")
async def denials(request: Request, state: State) -> Response:
    """Every refused request once (a denied sign-in is its failure event, not also the policy's decision)."""
    return await _page(request, state, denials=True)


@router.get("/verify")
async def verify(request: Request, state: State) -> Response:
    """Walk the whole chain (what ``broker audit verify --no-seal`` does; sealing is the sealer's job)."""
    def view(db: Session, console: ConsoleUser) -> Response:
        assert state.audit_keys is not None  # the broker does not start without a key-encryption key
        result = audit.verify(db, state.audit_keys.get(db))
        return render(request, "admin/audit_verify.html", console, {"result": result, "nav": "audit"})

    return await console_call(request, state, VIEW, view)


@router.get("/export.jsonl")
async def export(request: Request, state: State) -> Response:
    """The searched events, oldest first, one JSON object per line (the ``broker audit export`` format)."""
    query, _, problems = _query(request, denials=request.query_params.get("denials") == "1")

    def prepare() -> audit_search.Search:
        with state.database.transaction() as db:
            authenticate(db, request, state, VIEW)
            return audit_search.resolve(db, query)

    search = await run_in_threadpool(prepare)

    def lines() -> Iterator[bytes]:
        if problems or search.unmatched:
            return
        with state.database.sessions() as db:
            for event in audit_search.stream(db, search):
                yield json_line(event).encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"content-disposition": 'attachment; filename="audit.jsonl"',
                                      **NO_STORE})
