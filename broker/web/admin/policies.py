"""Policies: the version in force (TOML and a rules table), import with a dry-run diff, history and
rollback, the simulator (explain) and who-can. All through ``broker.registry.policies``, as the CLI."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from broker.admin.sessions import MANAGE, VIEW, ConsoleUser
from broker.lifecycle import offboarding
from broker.policy import PolicyError, hypothetical, parse_claims, render_document_diff
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
    """Can USER (or a person described by groups, claims and IdP) reach SERVER, with which scopes, and why
    (read-only: every role may ask)."""
    q = request.query_params
    asked = {name: (q.get(name) or "").strip()[:2000] for name in ("user", "server", "groups", "claims", "idp")}

    def view(db: Session, console: ConsoleUser) -> Response:
        context: dict[str, object] = {**_context(db), "draft": "", "sim": asked}
        server = registry.get(db, asked["server"], state.settings.issuer) if asked["server"] else None
        if asked["server"] and server is None:
            context["sim_error"] = f"no MCP server {asked['server']!r}"
        if server is not None and q.get("who_can"):
            context["who_can"] = policies.who_can_reach(db, policies.StoredPolicy().compiled(db), server)
        elif server is not None:
            context.update(_explain(db, server, asked))
        return render(request, "admin/policies.html", console, context)

    return await console_call(request, state, VIEW, view)


def _explain(db: Session, server: registry.Server, asked: dict[str, str]) -> dict[str, object]:
    """The explanation for the user named, or for the person described; or why there is none."""
    described = bool(asked["groups"] or asked["claims"] or asked["idp"])
    if asked["user"] and described:
        return {"sim_error": "name a known user, or describe a person by groups, claims and IdP: not both"}
    compiled = policies.StoredPolicy().compiled(db)
    if described:
        try:
            claims = parse_claims(line for line in asked["claims"].splitlines() if line.strip())
        except ValueError as exc:
            return {"sim_error": str(exc)}
        person = hypothetical(asked["groups"].split(","), claims, asked["idp"])
        return {"explanation": policies.explain_facts(compiled, person, server).to_dict(), "sim_person": True}
    if not asked["user"]:
        return {}
    try:
        user = offboarding.find_user(db, asked["user"])
    except offboarding.UnknownUser as exc:
        return {"sim_error": str(exc)}
    return {"explanation": policies.explain(db, compiled, user, server).to_dict(), "sim_subject": user}
