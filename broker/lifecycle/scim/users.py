"""SCIM Users (RFC 7644 §3.3-3.6) over broker users.

Contract, as a checklist:

- A SCIM User is a broker ``User`` plus its ``UpstreamIdentity`` at the token's IdP whose subject is
  the SCIM ``externalId``, so the user's later OIDC login through that IdP lands on the same broker
  user (and a user who signed in before being provisioned is linked, not duplicated). ``externalId``
  is therefore required and never changes (``mutability``).
- ``userName`` is unique per IdP without regard to case (``uniqueness``); ``displayName``, else
  ``name.formatted``, else the given and family names become the display name. The ``emails`` (kept
  with the resource and answered back) never become the broker user's email: a directory push vouches
  for no address, so only a sign-in whose IdP verified one sets it (``broker.oauth.provisioning``).
- ``active=false`` (POST, PUT or PATCH, in any shape, including Entra's ``"False"``) and DELETE
  offboard the user in the request's transaction (``offboarding.revoke_user``): when the response
  leaves, none of their tokens works any more, on any instance.
- ``active=true`` lifts only the offboarding this resource (or the deleted one it replaces) made, and
  only if nobody revoked the user since: a security team's revocation is never undone by an IdP push.
- DELETE keeps the broker user and its identity for the audit trail and takes them out of the IdP's
  SCIM groups; the resource answers 404 from then on.
- Passwords are accepted (Okta sends them) and dropped: the broker never stores or logs one.
"""

from __future__ import annotations

from typing import Any

from scim2_models import (
    Context,
    EnterpriseUser,
    GroupMembership,
    ListResponse,
    Meta,
    MutabilityException,
    NotFoundException,
    PatchOp,
    ResponseParameters,
    UniquenessException,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.audit import Outcome
from broker.lifecycle import offboarding
from broker.lifecycle.scim import events
from broker.lifecycle.scim.filters import USER_ATTRIBUTES, criteria
from broker.lifecycle.scim.wire import (
    ScimRequest,
    ScimResult,
    UserResource,
    apply_patch,
    apply_replacement,
    dump,
    fold,
    require_schema,
    resource_id,
    search_parameters,
    text_value,
    validate,
    wants,
)
from broker.storage import scim as store
from broker.storage import users
from broker.storage.enums import UserStatus
from broker.storage.models import Group, ScimUser, UpstreamIdentity, User

ENDPOINT = "Users"
_ENTERPRISE = str(EnterpriseUser.__schema__)
_MANAGER_PATH = f"{_ENTERPRISE}:manager".lower()
# Why externalId is required and fixed, and what the IdP must send in it (docs/scim.md: Okta, Entra ID).
EXTERNAL_ID_RULE = ("it is the user's subject at the IdP, which the broker matches logins on (Okta: the user id "
                    "00u..., its default; Entra ID: map objectId to externalId); to change it, delete the user and "
                    "provision it again")
# Kept in their own columns, or never kept at all (password), or computed (groups, meta).
_NOT_STORED = ("id", "meta", "groups", "password", "userName", "externalId", "active")


def create(session: Session, request: ScimRequest, payload: dict[str, Any]) -> ScimResult:
    require_schema(payload, UserResource.__schema__)
    resource = validate(UserResource, _entra_manager(payload, request), Context.RESOURCE_CREATION_REQUEST)
    idp = request.client.idp_id
    user_name = text_value(resource.user_name, "userName", 320)
    external_id = text_value(resource.external_id, "externalId", 255, why=EXTERNAL_ID_RULE)
    if store.live_user_where(session, idp, user_name_key=fold(user_name)) is not None:
        raise UniquenessException(detail="userName is already in use")
    user, linked, previous = _user_for(session, request, external_id, resource)
    row = ScimUser(user_id=user.id, idp_id=idp, user_name=user_name, user_name_key=fold(user_name),
                   external_id=external_id, active=True, attributes=_stored(resource),
                   offboarded_at=previous.offboarded_at if previous else None,
                   created_at=request.now, updated_at=request.now)
    session.add(row)
    _flush_unique(session)
    _apply_profile(session, request, row, user, resource)
    events.record(session, request, "scim.user.created", user_id=user.id, scim_id=row.id, user_name=user_name,
                  external_id=external_id, linked_existing_user=linked)
    _set_active(session, request, row, user, resource.active is not False)
    return _answer(session, request, 201, row, user, Context.RESOURCE_CREATION_RESPONSE)


def get(session: Session, request: ScimRequest, scim_id: str, params: list[tuple[str, str]]) -> ScimResult:
    parameters = search_parameters(UserResource, params, request.max_page_size, allow_paging=False)
    row, user = _load(session, request, scim_id, for_update=False)
    return _answer(session, request, 200, row, user, Context.RESOURCE_QUERY_RESPONSE, parameters)


def search(session: Session, request: ScimRequest, params: list[tuple[str, str]]) -> ScimResult:
    query = search_parameters(UserResource, params, request.max_page_size)
    offset = query.start_index_0 or 0
    count = request.max_page_size if query.count is None else query.count
    total, rows = store.find_users(session, request.client.idp_id, criteria(query.filter, USER_ATTRIBUTES),
                                   offset, count)
    groups = (store.groups_of(session, request.client.idp_id, [user.id for _, user in rows])
              if wants(query, "groups") else {})
    resources = [_resource(request, row, user, groups.get(user.id)) for row, user in rows]
    listing = ListResponse[UserResource](total_results=total, start_index=offset + 1,
                                         items_per_page=len(resources), resources=resources)
    return ScimResult(200, dump(listing, Context.RESOURCE_QUERY_RESPONSE, query))


def replace(session: Session, request: ScimRequest, scim_id: str, payload: dict[str, Any]) -> ScimResult:
    require_schema(payload, UserResource.__schema__)
    wanted = validate(UserResource, _entra_manager(payload, request), Context.RESOURCE_REPLACEMENT_REQUEST)
    row, user = _load(session, request, scim_id)
    original = _resource(request, row, user, None)
    if wanted.external_id is None:
        wanted.external_id = row.external_id  # left out of a PUT: the identity it keys stays
    apply_replacement(wanted, original)
    _save(session, request, row, user, wanted)
    return _answer(session, request, 200, row, user, Context.RESOURCE_REPLACEMENT_RESPONSE)


def patch(session: Session, request: ScimRequest, scim_id: str, payload: dict[str, Any]) -> ScimResult:
    require_schema(payload, PatchOp.__schema__)
    operations = validate(PatchOp[UserResource], _entra_manager(payload, request), Context.RESOURCE_PATCH_REQUEST)
    row, user = _load(session, request, scim_id)
    resource = _resource(request, row, user, None)
    apply_patch(operations, resource)
    if resource.external_id is None:  # a remove (or a null): as immutable as a replace would be
        raise MutabilityException(detail=f"externalId cannot be removed: {EXTERNAL_ID_RULE}")
    if resource.active is None:
        raise MutabilityException(detail="active cannot be removed: replace it with false to deactivate the user "
                                         "(offboarded at once) or true to reactivate")
    _save(session, request, row, user, resource)
    return _answer(session, request, 200, row, user, Context.RESOURCE_PATCH_RESPONSE)


def delete(session: Session, request: ScimRequest, scim_id: str) -> ScimResult:
    row, user = _load(session, request, scim_id)
    _deactivate(session, request, row, user, reason="deleted in the IdP (SCIM)")
    left = store.leave_groups(session, request.client.idp_id, user.id)
    row.deleted_at = row.updated_at = request.now
    events.record(session, request, "scim.user.deleted", user_id=user.id, scim_id=row.id, user_name=row.user_name,
                  external_id=row.external_id, groups_left=left)
    return ScimResult(204)


# ------------------------------------------------------------------ steps


def _load(session: Session, request: ScimRequest, scim_id: str, *, for_update: bool = True) -> tuple[ScimUser, User]:
    row = store.live_user(session, request.client.idp_id, scim_id, for_update=for_update) \
        if resource_id(scim_id) else None
    user = None if row is None else users.get(session, row.user_id)
    if row is None or user is None:
        raise NotFoundException(detail="no such user")
    return row, user


def _entra_manager(payload: dict[str, Any], request: ScimRequest) -> dict[str, Any]:
    """Entra ID's default mapping sends the enterprise ``manager`` as a bare id, without the ``$ref``
    RFC 7643 §4.3 requires: make it ``{"value": id, "$ref": <its location>}`` before validation."""
    def manager(value: Any) -> Any:
        if isinstance(value, str):
            value = {"value": value}
        if isinstance(value, dict) and isinstance(value.get("value"), str) and "$ref" not in value:
            value = {**value, "$ref": request.location(ENDPOINT, value["value"])}
        return value

    extension = payload.get(_ENTERPRISE)
    if isinstance(extension, dict) and "manager" in extension:
        payload = {**payload, _ENTERPRISE: {**extension, "manager": manager(extension["manager"])}}
    operations = payload.get("Operations")
    if isinstance(operations, list):
        payload = {**payload, "Operations": [
            {**op, "value": manager(op["value"])} if isinstance(op, dict) and "value" in op
            and isinstance(op.get("path"), str) and op["path"].lower() == _MANAGER_PATH else op
            for op in operations]}
    return payload


def _user_for(session: Session, request: ScimRequest, external_id: str,
              resource: Any) -> tuple[User, bool, ScimUser | None]:
    """The broker user this externalId names at the IdP (linked), or a new one with that identity."""
    idp = request.client.idp_id
    identity = users.identity(session, idp, external_id)
    if identity is not None:
        if store.live_user_where(session, idp, external_id=external_id) is not None:
            raise UniquenessException(detail="externalId is already in use")
        user = users.get(session, identity.user_id)
        assert user is not None
        return user, True, store.last_deleted_user(session, idp, user.id)
    user = User(display_name=_display_name(resource), status=UserStatus.ACTIVE, created_at=request.now,
                updated_at=request.now)
    users.add(session, user)
    users.add(session, UpstreamIdentity(user_id=user.id, idp_id=idp, subject=external_id, created_at=request.now))
    return user, False, None


def _save(session: Session, request: ScimRequest, row: ScimUser, user: User, resource: Any) -> None:
    """Write a replaced or patched resource back: names, profile, then the active state."""
    user_name = text_value(resource.user_name, "userName", 320)
    if (resource.external_id or row.external_id) != row.external_id:
        raise MutabilityException(detail=f"externalId cannot change: {EXTERNAL_ID_RULE}")
    key = fold(user_name)
    if key != row.user_name_key and store.live_user_where(session, row.idp_id, user_name_key=key) is not None:
        raise UniquenessException(detail="userName is already in use")
    before = _view(row, user)
    row.user_name, row.user_name_key, row.attributes = user_name, key, _stored(resource)
    row.updated_at = request.now
    _flush_unique(session)
    _apply_profile(session, request, row, user, resource)
    old, new = events.changes(before, _view(row, user))
    if new:
        events.record(session, request, "scim.user.updated", user_id=user.id, scim_id=row.id, before=old, after=new)
    _set_active(session, request, row, user, row.active if resource.active is None else resource.active)


def _set_active(session: Session, request: ScimRequest, row: ScimUser, user: User, active: bool) -> None:
    if active:
        _activate(session, request, row, user)
    else:
        _deactivate(session, request, row, user, reason="deactivated in the IdP (SCIM)")


def _deactivate(session: Session, request: ScimRequest, row: ScimUser, user: User, *, reason: str) -> None:
    was_active, row.active = row.active, False
    offboard = user.status != UserStatus.OFFBOARDED
    if offboard:
        offboarding.revoke_user(session, user.id, reason=reason, actor=request.client.actor, now=request.now,
                                source=request.client.actor)
        row.offboarded_at = user.not_before
    if was_active or offboard:
        events.record(session, request, "scim.user.deactivated", user_id=user.id,
                      outcome=Outcome.REVOKED if offboard else Outcome.SUCCESS, scim_id=row.id, offboarded=offboard)


def _activate(session: Session, request: ScimRequest, row: ScimUser, user: User) -> None:
    was_inactive, row.active = not row.active, True
    # Only what SCIM itself did is undone: a later revocation (admin, signal) moved not_before on.
    ours = row.offboarded_at is not None and user.not_before == row.offboarded_at
    restored = user.status == UserStatus.OFFBOARDED and ours and offboarding.restore_user(
        session, user.id, reason="reactivated in the IdP (SCIM)", actor=request.client.actor, now=request.now)
    if user.status != UserStatus.OFFBOARDED:
        row.offboarded_at = None
    if was_inactive or restored:
        data: dict[str, Any] = {"scim_id": row.id, "restored": restored}
        if user.status == UserStatus.OFFBOARDED:
            data["kept_offboarded"] = "offboarded by someone else, or revoked again since: restore it at the broker"
        events.record(session, request, "scim.user.reactivated", user_id=user.id, **data)


def _apply_profile(session: Session, request: ScimRequest, row: ScimUser, user: User, resource: Any) -> None:
    user.display_name = _display_name(resource)
    user.updated_at = request.now


def _display_name(resource: Any) -> str:
    name = resource.name
    given_family = " ".join(p for p in (name.given_name, name.family_name) if p) if name else ""
    for candidate in (resource.display_name, name.formatted if name else None, given_family, resource.user_name):
        if candidate and candidate.strip():
            return candidate.strip()[:200]
    return ""


def _view(row: ScimUser, user: User) -> dict[str, Any]:
    return {"userName": row.user_name, "displayName": user.display_name}


def _stored(resource: Any) -> dict[str, Any]:
    data = resource.model_dump(scim_ctx=Context.DEFAULT)
    return {key: value for key, value in data.items() if key not in _NOT_STORED}


def _flush_unique(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:  # a concurrent request took the userName or externalId first
        raise UniquenessException(detail="userName or externalId is already in use") from None


def _resource(request: ScimRequest, row: ScimUser, user: User, groups: list[Group] | None) -> Any:
    data = {**row.attributes, "id": row.id, "userName": row.user_name, "externalId": row.external_id,
            "active": row.active,
            "meta": Meta(resource_type="User", created=row.created_at, last_modified=row.updated_at,
                         location=request.location(ENDPOINT, row.id))}
    if groups:
        data["groups"] = [GroupMembership(value=g.id, ref=request.location("Groups", g.id), display=g.name,
                                          type="direct") for g in groups]
    return UserResource.model_validate(data)


def _answer(session: Session, request: ScimRequest, status: int, row: ScimUser, user: User, context: Context,
            parameters: ResponseParameters[Any] | None = None) -> ScimResult:
    groups = store.groups_of(session, row.idp_id, [user.id]).get(user.id) \
        if parameters is None or wants(parameters, "groups") else None
    resource = _resource(request, row, user, groups)
    location = request.location(ENDPOINT, row.id)
    return ScimResult(status, dump(resource, context, parameters), location if status == 201 else None)
