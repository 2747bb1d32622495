"""Policies: the rules in force as a table (TOML one click away), changes reviewed before they apply (a whole
file, one rule, or a rollback: the dry run's page carries the only Apply, bound to its document by a digest
checked here), history, the simulator (explain) and who-can. All through ``broker.registry.policies``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from broker.admin import names
from broker.admin.sessions import MANAGE, VIEW, ConsoleUser
from broker.lifecycle import offboarding
from broker.policy import PolicyError, RuleChange, hypothetical, parse_claims, render_document_diff
from broker.policy.explain import describe_rule
from broker.policy.policyfile import dump_rule
from broker.registry import policies
from broker.registry import servers as registry
from broker.storage import mcp_servers
from broker.storage import policies as versions
from broker.web.admin.common import ConsoleRoute, Refused, back, console_call, read_form, render
from broker.web.deps import State

router = APIRouter(prefix="/admin/policies", route_class=ConsoleRoute, include_in_schema=False)
RULE_ASPECTS = ("effect", "subjects", "targets", "scopes", "conditions", "description")
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
    history = versions.history(db)
    return {"version": version, "text": policies.export(db), "history": history,
            "authors": names.for_actors(db, [row.author for row in history]),
            "new_rule": NEW_RULE, "rules": [(rule, describe_rule(rule), dump_rule(rule)) for rule in document.rules],
            "servers": mcp_servers.list_all(db), "nav": "policies"}


@router.get("")
async def overview(request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        return render(request, "admin/policies.html", console,
                      {**_context(db), "draft": "", "done": request.query_params.get("done")})

    return await console_call(request, state, VIEW, view)


@router.get("/edit")
async def edit(request: Request, state: State) -> Response:
    """The policy file in an editor; the only way on is a review of the changes."""
    def view(db: Session, console: ConsoleUser) -> Response:
        return _editor(request, db, console, policies.export(db), "")

    return await console_call(request, state, MANAGE, view)


@router.post("/edit")
async def edit_again(request: Request, state: State) -> Response:
    """Back from a review to the editor, with the draft as it was."""
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        return _editor(request, db, console, form.get("document", ""), form.get("comment", ""))

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


@router.post("/review")
async def review(request: Request, state: State) -> Response:
    """The dry run of a whole policy file: the rule changes and who gains or loses what, then Apply."""
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        return _review(request, state, db, console, form.get("document", ""), form.get("comment", ""))

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
        return _review(request, state, db, console, draft, what)

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


@router.post("/rollback")
async def review_rollback(request: Request, state: State) -> Response:
    """What rolling back to a version would change, then Apply (a rollback is a change like any other)."""
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        version = _version(form.get("version", ""))
        document, result = _rollback_review(db, version)
        return _review_page(request, db, console, document, f"rollback to version {version}", result,
                            rollback=version)

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


@router.post("/apply")
async def apply(request: Request, state: State) -> Response:
    """Store the reviewed document (or rollback), only if it is exactly what the review showed and the policy
    has not changed since; otherwise show the review again."""
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        text, comment, reviewed = form.get("document", ""), form.get("comment", "")[:500], form.get("review", "")
        try:
            version: int | None
            if form.get("rollback"):
                version = policies.rollback(db, _version(form["rollback"]), author=console.actor, reviewed=reviewed)
            else:
                version = policies.import_policy(db, text, issuer=state.settings.issuer, author=console.actor,
                                                 comment=comment, reviewed=reviewed).version
        except policies.StaleReview as exc:
            return _stale(request, state, db, console, form, str(exc))
        except policies.UnknownVersion:
            raise Refused("No such version", "That policy version does not exist.", 400) from None
        except PolicyError as exc:  # a reviewed document no longer fits the servers (one was changed meanwhile)
            return _editor(request, db, console, text, comment, [str(p) for p in exc.problems], 400)
        return back(f"/admin/policies?done={version}")

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


def _version(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Refused("No such version", "That policy version does not exist.", 400) from None


def _rollback_review(db: Session, version: int) -> tuple[str, policies.ImportResult]:
    try:
        return policies.review_rollback(db, version)
    except policies.UnknownVersion:
        raise Refused("No such version", "That policy version does not exist.", 400) from None


def _editor(request: Request, db: Session, console: ConsoleUser, text: str, comment: str,
            problems: list[str] | None = None, status: int = 200) -> Response:
    version, _ = policies.current_document(db)
    return render(request, "admin/policy_edit.html", console,
                  {"version": version, "draft": text, "comment": comment, "problems": problems or [],
                   "nav": "policies"}, status)


def _review(request: Request, state: State, db: Session, console: ConsoleUser, text: str, comment: str) -> Response:
    """Validate a whole policy document; the review page, or the editor with every problem."""
    try:
        result = policies.import_policy(db, text, issuer=state.settings.issuer, author=console.actor,
                                        comment=comment[:500], dry_run=True)
    except PolicyError as exc:
        return _editor(request, db, console, text, comment, [str(p) for p in exc.problems], 400)
    return _review_page(request, db, console, text, comment, result)


def _review_page(request: Request, db: Session, console: ConsoleUser, text: str, comment: str,
                 result: policies.ImportResult, rollback: int | None = None, stale: str = "",
                 status: int = 200) -> Response:
    changes = [(change, _fields(change)) for change in result.rule_changes]
    return render(request, "admin/policy_review.html", console, {
        "document": text, "comment": comment, "result": result, "changes": changes, "rollback": rollback,
        "diff": render_document_diff(result.rule_changes), "known_note": policies.known_users_note(result),
        "stale": stale, "nav": "policies"}, status)


def _fields(change: RuleChange) -> list[tuple[str, str, str]]:
    """(aspect, before, after) for every aspect of the rule that the change touches."""
    before = describe_rule(change.before) if change.before else {}
    after = describe_rule(change.after) if change.after else {}
    return [(name, before.get(name, ""), after.get(name, "")) for name in RULE_ASPECTS
            if before.get(name, "") != after.get(name, "")]


def _stale(request: Request, state: State, db: Session, console: ConsoleUser, form: dict[str, str],
           why: str) -> Response:
    """An apply that does not match its review: nothing stored; the review of what was sent, as of now."""
    if form.get("rollback"):
        version = _version(form["rollback"])
        document, result = _rollback_review(db, version)
        return _review_page(request, db, console, document, f"rollback to version {version}", result,
                            rollback=version, stale=why, status=409)
    text, comment = form.get("document", ""), form.get("comment", "")
    try:
        result = policies.import_policy(db, text, issuer=state.settings.issuer, author=console.actor,
                                        comment=comment[:500], dry_run=True)
    except PolicyError as exc:
        return _editor(request, db, console, text, comment, [str(p) for p in exc.problems], 400)
    return _review_page(request, db, console, text, comment, result, stale=why, status=409)


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
