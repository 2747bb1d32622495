"""SCIM Groups (RFC 7644 §3.3-3.6) over broker groups of source ``scim:<idp>``.

Contract, as a checklist:

- A SCIM Group is a broker ``Group`` (source ``scim:<idp>``, name = ``displayName``, ``external_id``)
  whose memberships are the policy's group facts: adding or removing a member changes what the user
  may reach at their next token request or refresh.
- ``displayName`` is the group's name in policy, so it is unique per IdP (``uniqueness``).
- Members are users this IdP provisioned, named by their SCIM id; an unknown id, or a nested group,
  is ``invalidValue`` and nothing changes. Removing a member that is not there changes nothing.
- Okta's shapes (``replace`` with ``{"id", "displayName"}``, ``members[value eq "..."]`` removal) and
  Entra's (capitalised ``op``, ``remove`` with a ``value`` listing members) are both accepted.
- PATCH answers 204 (RFC 7644 §3.5.2 allows it; Okta expects it): a large group is not sent back.
- DELETE removes the group and its memberships; the audit event keeps its name and members.
"""

from __future__ import annotations

from typing import Any

from scim2_models import (
    Context,
    Group,
    GroupMember,
    InvalidValueException,
    ListResponse,
    Meta,
    NotFoundException,
    PatchOp,
    ResponseParameters,
    UniquenessException,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.lifecycle.scim import events
from broker.lifecycle.scim.filters import GROUP_ATTRIBUTES, criteria
from broker.lifecycle.scim.wire import (
    ScimRequest,
    ScimResult,
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
    without_attributeless_schemas,
)
from broker.storage import scim as store
from broker.storage.models import Group as GroupRow
from broker.storage.models import ScimGroup, ScimUser, User

ENDPOINT = "Groups"
# Entra ID names its AD group schema on the groups it creates (its own examples), without attributes under it.
ENTRA_GROUP_SCHEMAS = ("urn:ietf:params:scim:schemas:extension:ADSCIM:2.0:Group",
                       "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group")
USERS_ENDPOINT = "Users"  # where members live (broker.lifecycle.scim.users.ENDPOINT)


def create(session: Session, request: ScimRequest, payload: dict[str, Any]) -> ScimResult:
    payload = without_attributeless_schemas(payload, ENTRA_GROUP_SCHEMAS)
    require_schema(payload, Group.__schema__)
    resource = validate(Group, payload, Context.RESOURCE_CREATION_REQUEST)
    idp = request.client.idp_id
    name = text_value(resource.display_name, "displayName", 255)
    if store.group_named(session, idp, name) is not None:
        raise UniquenessException(detail="a group with this displayName exists")
    members = _member_users(session, request, resource.members)
    row = GroupRow(source=store.group_source(idp), name=name, external_id=_external_id(resource),
                   created_at=request.now)
    session.add(row)
    _flush_unique(session)
    scim_row = ScimGroup(group_id=row.id, idp_id=idp, display_name_key=fold(name), created_at=request.now,
                         updated_at=request.now)
    session.add(scim_row)
    store.change_members(session, row.id, add=members, remove=())
    events.record(session, request, "scim.group.created", group_id=row.id, display_name=name,
                  external_id=row.external_id, members=sorted(members))
    return _answer(session, request, 201, row, scim_row, Context.RESOURCE_CREATION_RESPONSE)


def get(session: Session, request: ScimRequest, group_id: str, params: list[tuple[str, str]]) -> ScimResult:
    parameters = search_parameters(Group, params, request.max_page_size, allow_paging=False)
    row, scim_row = _load(session, request, group_id, for_update=False)
    return _answer(session, request, 200, row, scim_row, Context.RESOURCE_QUERY_RESPONSE, parameters)


def search(session: Session, request: ScimRequest, params: list[tuple[str, str]]) -> ScimResult:
    query = search_parameters(Group, params, request.max_page_size)
    offset = query.start_index_0 or 0
    count = request.max_page_size if query.count is None else query.count
    idp = request.client.idp_id
    total, rows = store.find_groups(session, idp, criteria(query.filter, GROUP_ATTRIBUTES), offset, count)
    members = store.members_of(session, idp, [g.id for g, _ in rows]) if wants(query, "members") else {}
    resources = [_resource(request, g, s, members.get(g.id)) for g, s in rows]
    listing = ListResponse[Group](total_results=total, start_index=offset + 1, items_per_page=len(resources),
                                  resources=resources)
    return ScimResult(200, dump(listing, Context.RESOURCE_QUERY_RESPONSE, query))


def replace(session: Session, request: ScimRequest, group_id: str, payload: dict[str, Any]) -> ScimResult:
    payload = without_attributeless_schemas(payload, ENTRA_GROUP_SCHEMAS)
    require_schema(payload, Group.__schema__)
    wanted = validate(Group, payload, Context.RESOURCE_REPLACEMENT_REQUEST)
    row, scim_row = _load(session, request, group_id)
    apply_replacement(wanted, _current(session, request, row, scim_row))
    _save(session, request, row, scim_row, wanted)
    return _answer(session, request, 200, row, scim_row, Context.RESOURCE_REPLACEMENT_RESPONSE)


def patch(session: Session, request: ScimRequest, group_id: str, payload: dict[str, Any]) -> ScimResult:
    require_schema(payload, PatchOp.__schema__)
    operations = validate(PatchOp[Group], payload, Context.RESOURCE_PATCH_REQUEST)
    row, scim_row = _load(session, request, group_id)
    resource = _current(session, request, row, scim_row)
    apply_patch(operations, resource)
    _save(session, request, row, scim_row, resource)
    # RFC 7644 §3.5.2 allows 204; Okta expects it, Entra accepts it, and a large group is not sent back.
    return ScimResult(204)


def delete(session: Session, request: ScimRequest, group_id: str) -> ScimResult:
    row, _ = _load(session, request, group_id)
    members = sorted(store.member_user_ids(session, row.id))
    events.record(session, request, "scim.group.deleted", group_id=row.id, display_name=row.name,
                  external_id=row.external_id, members=members)
    store.delete_group(session, row.id)
    return ScimResult(204)


# ------------------------------------------------------------------ steps


def _load(session: Session, request: ScimRequest, group_id: str, *,
          for_update: bool = True) -> tuple[GroupRow, ScimGroup]:
    found = store.group(session, request.client.idp_id, group_id, for_update=for_update) \
        if resource_id(group_id) else None
    if found is None:
        raise NotFoundException(detail="no such group")
    return found


def _save(session: Session, request: ScimRequest, row: GroupRow, scim_row: ScimGroup, resource: Group) -> None:
    """Write a replaced or patched group back: name, externalId, then the member set."""
    name = text_value(resource.display_name, "displayName", 255)
    other = store.group_named(session, request.client.idp_id, name) if name != row.name else None
    if other is not None and other.id != row.id:
        raise UniquenessException(detail="a group with this displayName exists")
    wanted = _member_users(session, request, resource.members)
    current = store.member_user_ids(session, row.id)
    before = {"displayName": row.name, "externalId": row.external_id}
    row.name, row.external_id = name, _external_id(resource)
    scim_row.display_name_key, scim_row.updated_at = fold(name), request.now
    _flush_unique(session)
    added, removed = sorted(set(wanted) - current), sorted(current - set(wanted))
    store.change_members(session, row.id, add=added, remove=removed)
    old, new = events.changes(before, {"displayName": row.name, "externalId": row.external_id})
    if new or added or removed:
        events.record(session, request, "scim.group.updated", group_id=row.id, before=old, after=new,
                      members_added=added, members_removed=removed)


def _member_users(session: Session, request: ScimRequest, members: list[GroupMember] | None) -> dict[str, str]:
    """The broker user ids of the members (each a user this IdP provisioned), to their SCIM ids."""
    values = []
    for member in members or []:
        if member.type is not None and member.type.lower() != "user":
            raise InvalidValueException(detail="members must be users: nested groups are not supported")
        if not member.value:
            raise InvalidValueException(detail="members.value is required")
        values.append(member.value)
    found = store.live_users_by_scim_id(session, request.client.idp_id, [v for v in values if resource_id(v)])
    missing = sorted(set(values) - set(found))
    if missing:
        raise InvalidValueException(detail=f"members.value {missing[0]!r} is not a user this IdP provisioned")
    return {row.user_id: row.id for row in found.values()}


def _external_id(resource: Group) -> str | None:
    if resource.external_id is None:
        return None
    return text_value(resource.external_id, "externalId", 255)


def _flush_unique(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:  # a concurrent request took the name first
        raise UniquenessException(detail="a group with this displayName exists") from None


def _current(session: Session, request: ScimRequest, row: GroupRow, scim_row: ScimGroup) -> Group:
    members = store.members_of(session, request.client.idp_id, [row.id])[row.id]
    return _resource(request, row, scim_row, members)


def _resource(request: ScimRequest, row: GroupRow, scim_row: ScimGroup,
              members: list[tuple[ScimUser, User]] | None) -> Group:
    meta = Meta(resource_type="Group", created=scim_row.created_at, last_modified=scim_row.updated_at,
                location=request.location(ENDPOINT, row.id))
    listed = None if members is None else [
        GroupMember(value=member.id, ref=request.location(USERS_ENDPOINT, member.id),  # RFC 7643 §4.2: $ref
                    display=user.display_name or None, type="User") for member, user in members]
    return Group(id=row.id, display_name=row.name, external_id=row.external_id, members=listed, meta=meta)


def _answer(session: Session, request: ScimRequest, status: int, row: GroupRow, scim_row: ScimGroup,
            context: Context, parameters: ResponseParameters[Any] | None = None) -> ScimResult:
    members = store.members_of(session, request.client.idp_id, [row.id])[row.id] \
        if parameters is None or wants(parameters, "members") else None
    resource = _resource(request, row, scim_row, members)
    location = request.location(ENDPOINT, row.id)
    return ScimResult(status, dump(resource, context, parameters), location if status == 201 else None)
