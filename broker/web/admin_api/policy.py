"""The access policy: the version in force, history, import (with a dry run), rollback, the simulator
and who-can (``broker.registry.policies``, as the CLI and the console)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from broker.lifecycle import offboarding
from broker.policy import Change, PolicyError, SubjectChange, hypothetical, render_document_diff
from broker.registry import policies
from broker.registry import servers as registry
from broker.storage import policies as versions
from broker.web.admin_api.common import BAD_BODY, Body, ColdRoute, Reader, Writer, actor, errors, fail, iso, not_found
from broker.web.deps import DbSession, State

router = APIRouter(route_class=ColdRoute)  # each route's session on its own thread


class PolicyOut(BaseModel):
    version: int = Field(description="0: no policy yet (everything is denied)")
    document: str = Field(description="the policy file (TOML, docs/policy.md)")


class VersionOut(BaseModel):
    version: int
    author: str
    comment: str
    created_at: str | None


class PolicyIn(Body):
    document: str = Field(max_length=1_000_000, description="the whole policy file (TOML)")
    dry_run: bool = Field(False, description="only report what would change; store nothing")
    comment: str = Field("", max_length=500)
    review_digest: str | None = Field(None, max_length=64, description="the `review_digest` of the dry run this "
                                      "apply follows: refused (409) unless the document is the same and the policy "
                                      "is still at the dry run's `base_version`")


class RuleChangeOut(BaseModel):
    kind: str = Field(description="added, removed or changed")
    rule_id: str


class AccessChangeOut(BaseModel):
    user_id: str
    email: str | None
    server_id: str
    kind: str = Field(description="gains, loses or changes")
    before_scopes: list[str]
    after_scopes: list[str]


class SubjectChangeOut(BaseModel):
    subject_kind: str = Field(description="everyone, group, claim or idp")
    subject: str = Field(description="the group name, `name = value` of a claim, IdP id; empty for everyone")
    server_id: str
    kind: str = Field(description="gains, loses or changes")
    before_scopes: list[str]
    after_scopes: list[str]


class ImportOut(BaseModel):
    dry_run: bool
    version: int | None = Field(description="the new version (null for a dry run)")
    base_version: int = Field(description="the version in force that the changes are computed against")
    review_digest: str = Field(description="pass it back with the apply to bind it to this dry run")
    rule_changes: list[RuleChangeOut]
    diff: str = Field(description="the rule changes as policy-file lines marked - and +")
    subject_changes: list[SubjectChangeOut] = Field(description="everyone, groups and the other subjects the rules "
                                                    "name: who gains or loses what (a group is listed only where it "
                                                    "differs from everyone)")
    access_changes: list[AccessChangeOut] = Field(description="each known user who gains or loses a server or scope")
    known_users: int = Field(description="active users known to the broker (signed in or provisioned through SCIM) "
                             "that the change was checked against; 0: none yet, so only subjects are listed")


class PolicyProblem(BaseModel):
    line: int | None
    rule_id: str | None
    message: str


class RollbackIn(Body):
    version: int = Field(ge=1, le=2**31 - 1)


class RollbackOut(BaseModel):
    version: int = Field(description="the new version, a copy of the restored one")
    restored_version: int


class PersonIn(Body):
    """A person the broker does not know yet (a new hire), as their first sign-in would present them."""

    groups: list[str] = Field([], max_length=1000, description="their groups, after the IdP's group mapping")
    claims: dict[str, str | int | bool | list[str | int | bool]] = Field(
        {}, max_length=100, description="upstream claims (type-strict, as in the policy file)")
    idp: str | None = Field(None, max_length=64, description="the IdP id they sign in through")
    email: str | None = Field(None, max_length=320)


class ExplainIn(Body):
    user: str | None = Field(None, min_length=1, max_length=320,
                             description="a known user: id, email or IDP:SUBJECT (or give `person`)")
    person: PersonIn | None = Field(None, description="a person not known yet (or give `user`)")
    server: str = Field(min_length=1, max_length=200, description="MCP server id")
    client: str | None = Field(None, max_length=2000, description="client id (default: any client)")


class Check(BaseModel):
    aspect: str
    ok: bool
    detail: str


class RuleTraceOut(BaseModel):
    id: str
    effect: str
    description: str
    matched: bool
    checks: list[Check]


class ExplainOut(BaseModel):
    allowed: bool
    scopes: list[str]
    rule_ids: list[str]
    reason: str
    rules: list[RuleTraceOut]


class Reach(BaseModel):
    user_id: str
    email: str | None
    scopes: list[str]


class GroupReach(BaseModel):
    group: str
    scopes: list[str]


class WhoCanOut(BaseModel):
    server_id: str
    users: list[Reach]
    groups: list[GroupReach] = Field(description="groups whose membership alone gives access")
    everyone: list[str] = Field(description="what a user in no group gets (empty: nothing)")


def _server(session: DbSession, state: State, server_id: str) -> registry.Server:
    server = registry.get(session, server_id, state.settings.issuer)
    if server is None:
        raise not_found(f"no MCP server {server_id!r}")
    return server


@router.get("/policy", summary="The policy in force (admin:read)", response_model=PolicyOut, responses=errors())
def get_policy(session: DbSession, caller: Reader) -> PolicyOut:
    version, _ = policies.current_document(session)
    return PolicyOut(version=version, document=policies.export(session))


@router.get("/policy/versions", summary="Policy version history, newest first (admin:read)",
            response_model=list[VersionOut], responses=errors())
def policy_versions(session: DbSession, caller: Reader) -> list[VersionOut]:
    return [VersionOut(version=row.version, author=row.author, comment=row.comment, created_at=iso(row.created_at))
            for row in versions.history(session)]


@router.post("/policy", summary="Import a policy file as the next version, or dry-run it (admin:write)",
             response_model=ImportOut,
             responses={**errors(e409="`review_digest` does not match: the policy changed since the dry run, or "
                                      "the document differs"),
                        **BAD_BODY, 400: {"description": "invalid_request: the policy is invalid; "
                                                         "`problems` lists every problem with its line"}})
def import_policy(body: PolicyIn, session: DbSession, state: State, caller: Writer) -> ImportOut:
    try:
        result = policies.import_policy(session, body.document, issuer=state.settings.issuer, author=actor(caller),
                                        comment=body.comment, dry_run=body.dry_run, reviewed=body.review_digest)
    except PolicyError as exc:
        problems = [PolicyProblem(line=p.line, rule_id=p.rule_id, message=p.message).model_dump()
                    for p in exc.problems]
        raise fail(400, "invalid_request", str(exc), problems=problems) from None
    except policies.StaleReview as exc:
        raise fail(409, "conflict", str(exc)) from None
    return ImportOut(dry_run=body.dry_run, version=result.version, base_version=result.base_version,
                     review_digest=result.review,
                     rule_changes=[RuleChangeOut(kind=c.kind, rule_id=c.rule_id) for c in result.rule_changes],
                     diff=render_document_diff(result.rule_changes),
                     subject_changes=[_subject_change(c) for c in result.subject_changes],
                     access_changes=[_access_change(c) for c in result.access_changes],
                     known_users=result.known_users)


def _access_change(c: Change) -> AccessChangeOut:
    return AccessChangeOut(user_id=c.user.id, email=c.user.email, server_id=c.server_id, kind=c.kind,
                           before_scopes=sorted(c.before_scopes), after_scopes=sorted(c.after_scopes))


def _subject_change(c: SubjectChange) -> SubjectChangeOut:
    return SubjectChangeOut(subject_kind=c.row.kind, subject=c.row.key, server_id=c.server_id, kind=c.kind,
                            before_scopes=sorted(c.before_scopes), after_scopes=sorted(c.after_scopes))


@router.post("/policy/rollback", summary="Make an earlier version current again, as a new version "
                                         "(admin:write)", response_model=RollbackOut,
             responses={**errors(e404="No such policy version"), **BAD_BODY})
def rollback(body: RollbackIn, session: DbSession, caller: Writer) -> RollbackOut:
    try:
        version = policies.rollback(session, body.version, author=actor(caller))
    except policies.UnknownVersion as exc:
        raise not_found(str(exc)) from None
    return RollbackOut(version=version, restored_version=body.version)


@router.post("/policy/explain", summary="Simulate: can a user (or a person not known yet) reach SERVER, with which "
                                        "scopes, and why (read-only; admin:read)", response_model=ExplainOut,
             responses={**errors(e404="No such user or MCP server"), **BAD_BODY})
def explain(body: ExplainIn, session: DbSession, state: State, caller: Reader) -> ExplainOut:
    if (body.user is None) == (body.person is None):
        raise fail(400, "invalid_request", "give either `user` (a known user) or `person` (one not known yet)")
    server = _server(session, state, body.server)
    compiled = policies.StoredPolicy().compiled(session)
    if body.person is not None:
        person = hypothetical(body.person.groups, body.person.claims, body.person.idp, body.person.email)
        return ExplainOut(**policies.explain_facts(compiled, person, server, client_id=body.client).to_dict())
    try:
        user = offboarding.find_user(session, body.user or "")
    except offboarding.UnknownUser as exc:
        raise not_found(str(exc)) from None
    return ExplainOut(**policies.explain(session, compiled, user, server, client_id=body.client).to_dict())


@router.get("/policy/who-can", summary="Who can reach an MCP server, with which scopes (admin:read)",
            response_model=WhoCanOut, responses={**errors(e404="No such MCP server"), **BAD_BODY})
def who_can(session: DbSession, state: State, caller: Reader,
            server: str = Query(min_length=1, max_length=200, description="MCP server id")) -> WhoCanOut:
    answer = policies.who_can_reach(session, policies.StoredPolicy().compiled(session),
                                    _server(session, state, server))
    return WhoCanOut(server_id=answer.server_id,
                     users=[Reach(user_id=u.id, email=u.email, scopes=sorted(s)) for u, s in answer.users],
                     groups=[GroupReach(group=g, scopes=sorted(s)) for g, s in answer.groups],
                     everyone=sorted(answer.everyone))
