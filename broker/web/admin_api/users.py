"""Users: search, detail, offboard (revoke everywhere) and restore (``broker.admin.queries`` and
``broker.lifecycle.offboarding``, as the CLI and the console)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from broker.admin import names, queries
from broker.lifecycle import offboarding, sessions
from broker.storage import users as user_repo
from broker.storage.enums import UserStatus
from broker.storage.models import utcnow
from broker.storage.users import UserRow
from broker.web.admin_api.common import BAD_BODY, Body, ColdRoute, Reader, Revoker, actor, errors, fail, iso, not_found
from broker.web.deps import DbSession

router = APIRouter(route_class=ColdRoute)  # each route's session on its own thread
NO_USER = "No such user"
AMBIGUOUS = "The email matches several users: `candidates` lists them (name one by id or IDP:SUBJECT, or pass idp)"


class UserSummary(BaseModel):
    id: str
    email: str | None
    display_name: str | None
    status: str = Field(description="active or offboarded")
    last_login_at: str | None


class UserPage(BaseModel):
    users: list[UserSummary]
    page: int
    has_next: bool


class Identity(BaseModel):
    idp: str
    subject: str
    email: str | None


class SessionOut(BaseModel):
    """One live session: a refresh-token family one client holds for one MCP server."""

    id: str = Field(description="the session (refresh-token family) id, for `/sessions/{id}/revoke`")
    client_id: str
    client_name: str | None
    resource: str
    scope: str
    created_at: str | None
    last_used_at: str | None
    expires_at: str | None


class UserDetail(UserSummary):
    groups: list[str]
    identities: list[Identity]
    live_refresh_families: int
    sessions: list[SessionOut] = Field(description="live sessions, most recently used first (50 at most)")
    offboarded_at: str | None
    offboard_reason: str | None


class SessionRevokeBody(Body):
    reason: str = Field("revoked through the admin API", min_length=1, max_length=1000,
                        description="why (kept in the audit log)")


class SessionRevoked(BaseModel):
    user_id: str
    session_id: str
    revoked_at: str


class RevokeBody(Body):
    reason: str = Field(min_length=1, max_length=1000, description="why (kept in the audit log)")
    idp: str | None = Field(None, max_length=64, description="only users with an identity at this IdP")
    all_matches: bool = Field(False, description="an email several users have: offboard every one of them "
                                                 "(`revoked` lists them)")


class CandidateOut(BaseModel):
    id: str
    email: str | None
    display_name: str
    status: str
    identities: list[str] = Field(description="IDP:SUBJECT")
    last_login_at: str | None


class RestoreBody(Body):
    reason: str = Field("restored through the admin API", min_length=1, max_length=1000,
                        description="why (kept in the audit log)")


class RevokeResult(BaseModel):
    user_id: str
    families_revoked: int
    already_offboarded: bool
    not_before: str
    revoked: list[RevokeResult] = Field([], description="with all_matches: every user offboarded (the first is "
                                                        "the one above)")


class RestoreResult(BaseModel):
    user_id: str
    status: str


def summary(user: UserRow) -> UserSummary:
    return UserSummary(id=user.id, email=user.email, display_name=user.display_name, status=user.status,
                       last_login_at=iso(user.last_login_at))


def _find(session: DbSession, reference: str) -> UserRow:
    try:
        return offboarding.find_user(session, reference)
    except offboarding.UnknownUser as exc:
        raise _missing(exc) from None


def _missing(exc: offboarding.UnknownUser) -> Exception:
    if isinstance(exc, offboarding.AmbiguousUser):
        return fail(409, "conflict", str(exc), candidates=[
            CandidateOut(id=c.id, email=c.email, display_name=c.display_name, status=c.status,
                         identities=list(c.identities), last_login_at=iso(c.last_login_at)).model_dump()
            for c in exc.candidates])
    return not_found(str(exc))


@router.get("/users", summary="Search users by email, name or id (admin:read)", response_model=UserPage,
            responses={**errors(), **BAD_BODY})
def search_users(session: DbSession, caller: Reader, q: str = Query("", max_length=320),
                 page: int = Query(1, ge=1, le=100000),
                 status: str | None = Query(None, pattern="^(active|offboarded)$")) -> UserPage:
    result = queries.search_users(session, q.strip(), page, status)
    return UserPage(users=[summary(u) for u in result.rows], page=result.page, has_next=result.has_next)


@router.get("/users/{user}", summary="One user by id, email or IDP:SUBJECT: groups, identities, status "
                                     "(admin:read)", response_model=UserDetail,
            responses=errors(e404=NO_USER, e409=AMBIGUOUS))
def get_user(user: str, session: DbSession, caller: Reader) -> UserDetail:
    row = _find(session, user)
    identities = user_repo.identities_of(session, row.id)
    live = user_repo.live_family_count(session, row.id)
    families = queries.live_families(session, row.id)
    client_names = names.lookup(session, client_ids=[f.client_id for f in families]).clients
    return UserDetail(**summary(row).model_dump(), groups=user_repo.group_names(session, row.id),
                      identities=[Identity(idp=i.idp_id, subject=i.subject, email=i.email) for i in identities],
                      live_refresh_families=live, offboarded_at=iso(row.offboarded_at),
                      sessions=[SessionOut(id=f.id, client_id=f.client_id, client_name=client_names.get(f.client_id),
                                           resource=f.resource, scope=f.scope, created_at=iso(f.created_at),
                                           last_used_at=iso(f.last_used_at), expires_at=iso(f.expires_at))
                                for f in families],
                      offboard_reason=row.offboard_reason)


@router.post("/users/{user}/revoke", summary="Offboard a user everywhere (security:revoke)",
             response_model=RevokeResult, responses={**errors(e404=NO_USER, e409=AMBIGUOUS), **BAD_BODY})
def revoke_user(user: str, body: RevokeBody, session: DbSession, caller: Revoker) -> RevokeResult:
    try:
        targets = offboarding.to_offboard(session, user, idp=body.idp, every_match=body.all_matches)
    except offboarding.UnknownUser as exc:
        raise _missing(exc) from None
    results = [_revoked(offboarding.revoke_user(session, target.id, reason=body.reason, actor=actor(caller),
                                                now=utcnow(), source="admin-api")) for target in targets]
    return results[0].model_copy(update={"revoked": results if body.all_matches else []})


def _revoked(result: offboarding.Offboarded) -> RevokeResult:
    return RevokeResult(user_id=result.user_id, families_revoked=result.families_revoked,
                        already_offboarded=result.already_offboarded, not_before=result.not_before.isoformat())


@router.post("/users/{user}/sessions/{session_id}/revoke",
             summary="Revoke one session of a user (one refresh-token family); their other sessions and their "
                     "sign-in stay (security:revoke)", response_model=SessionRevoked,
             responses={**errors(e404="No such user, or no live session with that id for this user",
                                 e409=AMBIGUOUS), **BAD_BODY})
def revoke_session(user: str, session_id: str, session: DbSession, caller: Revoker,
                   body: SessionRevokeBody | None = None) -> SessionRevoked:
    target = _find(session, user)
    reason = body.reason if body is not None else SessionRevokeBody().reason
    try:
        family = sessions.revoke_session(session, target.id, session_id, reason=reason, actor=actor(caller),
                                         now=utcnow(), source="admin-api")
    except sessions.UnknownSession as exc:
        raise not_found(str(exc)) from None
    return SessionRevoked(user_id=target.id, session_id=family.id, revoked_at=iso(family.revoked_at) or "")


@router.post("/users/{user}/restore", summary="Let an offboarded user sign in again; tokens from before stay "
                                              "dead (security:revoke)", response_model=RestoreResult,
             responses={**errors(e404=NO_USER, e409="The user is not offboarded, or the email matches several "
                                                    "users (`candidates`)"), **BAD_BODY})
def restore_user(user: str, session: DbSession, caller: Revoker, body: RestoreBody | None = None) -> RestoreResult:
    target = _find(session, user)
    reason = body.reason if body is not None else RestoreBody().reason
    if not offboarding.restore_user(session, target.id, reason=reason, actor=actor(caller), now=utcnow()):
        raise fail(409, "conflict", f"user {target.id} is not offboarded")
    return RestoreResult(user_id=target.id, status=UserStatus.ACTIVE)
