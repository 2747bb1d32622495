"""Policies: the version in force (TOML and a rules table), import with a dry-run diff, history and
rollback, the simulator (explain) and who-can. All through ``broker.registry.policies``, as the CLI."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from broker.admin.sessions import MANAGE, VIEW, ConsoleUser
from broker.lifecycle import offboarding
from broker.policy import PolicyError, render_document_diff
from broker.policy.policyfile import dump_rule
from broker.registry import policies
from broker.registry import servers as registry
from broker.storage import mcp_servers
from broker.storage import policies as versions
from broker.web.admin.common import ConsoleRoute, Refused, back, console_call, read_form, render
from broker.web.deps import State

router = APIRouter(prefix="/admin/policies", route_class=ConsoleRoute, include_in_schema=False)
NEW_RULE = """[[rules]]
id = "new-rule"
description = ""
effect = "allow"
scopes = ["tools:read"]

[rules.subjects]
groups = ["engineering"]

[rules.targets]
servers = ["demo"]"""


def _context(db: Session) -> dict[str, object]:
    version, document = policies.current_document(db)
    return {"version": version, "text": policies.export(db), "history": versions.history(db),
            "new_rule": NEW_RULE,
            "rules": [(rule, dump_rule(rule)) for rule in document.rules],
            "servers": mcp_servers.list_all(db), "nav": "policies"}


@router.get("")
async def overview(request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        return render(request, "admin/policies.html", console,
                      {**_context(db), "draft": "", "done": request.query_params.get("done")})

    return await console_call(request, state, VIEW, view)


@router.post("/import")
async def import_policy(request: Request, state: State) -> Response:
    """``dry_run`` shows the rule diff and who gains or loses access; ``apply`` stores the next version."""
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        return _review_or_apply(request, state, db, console, form.get("document", ""), form.get("comment", ""),
                                apply=form.get("action") == "apply")

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


@router.post("/rules")
async def change_rule(request: Request, state: State) -> Response:
    """Add, edit (``replace`` names the rule) or remove one rule: the result is shown as a dry run first."""
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        _, document = policies.current_document(db)
        replace, removing = form.get("replace", ""), form.get("action") == "remove"
        kept = [dump_rule(rule) for rule in document.rules if rule.id != replace]
        snippet = "" if removing else form.get("rule", "").strip()
        draft = "\n".join([*kept, *([snippet + "\n"] if snippet else [])])
        what = f"remove rule {replace}" if removing else (f"edit rule {replace}" if replace else "add a rule")
        return _review_or_apply(request, state, db, console, draft, what, apply=False)

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


def _review_or_apply(request: Request, state: State, db: Session, console: ConsoleUser, text: str, comment: str,
                     apply: bool) -> Response:
    """Validate a whole policy document; show the rule diff and access changes, or store it."""
    try:
        result = policies.import_policy(db, text, issuer=state.settings.issuer, author=console.actor,
                                        comment=comment[:500], dry_run=not apply)
    except PolicyError as exc:
        return render(request, "admin/policies.html", console,
                      {**_context(db), "draft": text, "comment": comment,
                       "problems": [str(p) for p in exc.problems]}, 400)
    if apply:
        return back(f"/admin/policies?done={result.version}")
    return render(request, "admin/policies.html", console,
                  {**_context(db), "draft": text, "comment": comment,
                   "diff": render_document_diff(result.rule_changes) or "no rule changes",
                   "access": [c.render() for c in result.access_changes], "dry_run": True})


@router.post("/rollback")
async def rollback(request: Request, state: State) -> Response:
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        try:
            version = policies.rollback(db, int(form.get("version", "")), author=console.actor)
        except (ValueError, policies.UnknownVersion):
            raise Refused("No such version", "That policy version does not exist.", 400) from None
        return back(f"/admin/policies?done={version}")

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


@router.get("/simulate")
async def simulate(request: Request, state: State) -> Response:
    """Can USER reach SERVER, with which scopes, and why (read-only: every role may ask)."""
    who, server_id = (request.query_params.get("user") or "").strip(), request.query_params.get("server") or ""

    def view(db: Session, console: ConsoleUser) -> Response:
        context: dict[str, object] = {**_context(db), "draft": "", "sim_user": who, "sim_server": server_id}
        server = registry.get(db, server_id, state.settings.issuer) if server_id else None
        try:
            user = offboarding.find_user(db, who) if who else None
        except offboarding.UnknownUser as exc:
            context["sim_error"] = str(exc)
            user = None
        if who and server_id and server is None:
            context["sim_error"] = f"no MCP server {server_id!r}"
        if user is not None and server is not None:
            compiled = policies.StoredPolicy().compiled(db)
            context["explanation"] = policies.explain(db, compiled, user, server).to_dict()
        if server is not None and request.query_params.get("who_can"):
            answer = policies.who_can_reach(db, policies.StoredPolicy().compiled(db), server)
            context["who_can"] = answer
        return render(request, "admin/policies.html", console, context)

    return await console_call(request, state, VIEW, view)
