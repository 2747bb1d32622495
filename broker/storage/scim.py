"""Queries behind the SCIM server: the resources one IdP's SCIM client provisioned.

Every query is scoped to one IdP: a SCIM token never sees what another IdP provisioned.
Criteria are ``(attribute, value)`` pairs joined by *and*, already folded where the attribute
compares without case; an attribute not listed for a resource type is a programming error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from broker.storage.models import Group, GroupMembership, ScimGroup, ScimUser, User

Criteria = Sequence[tuple[str, str]]


def group_source(idp_id: str) -> str:
    return f"scim:{idp_id}"


# ------------------------------------------------------------------ users


def live_user(session: Session, idp_id: str, scim_id: str, *, for_update: bool = False) -> ScimUser | None:
    query = select(ScimUser).where(ScimUser.id == scim_id, ScimUser.idp_id == idp_id, ScimUser.deleted_at.is_(None))
    return session.scalar(query.with_for_update() if for_update else query)


def live_user_where(session: Session, idp_id: str, **equal: str) -> ScimUser | None:
    """The live resource whose columns equal ``equal`` (``user_name_key``, ``external_id``, ``user_id``)."""
    query = select(ScimUser).where(ScimUser.idp_id == idp_id, ScimUser.deleted_at.is_(None),
                                   *(getattr(ScimUser, column) == value for column, value in equal.items()))
    return session.scalar(query)


def last_deleted_user(session: Session, idp_id: str, user_id: str) -> ScimUser | None:
    """The most recently deleted resource over this broker user (to carry its offboarding across)."""
    return session.scalar(select(ScimUser).where(ScimUser.idp_id == idp_id, ScimUser.user_id == user_id,
                                                 ScimUser.deleted_at.is_not(None))
                          .order_by(ScimUser.deleted_at.desc()).limit(1))


def _user_condition(attribute: str, value: str) -> ColumnElement[bool]:
    if attribute == "id":
        return ScimUser.id == value
    if attribute == "userName":
        return ScimUser.user_name_key == value
    if attribute == "externalId":
        return ScimUser.external_id == value
    raise ValueError(f"no user criterion {attribute!r}")


def find_users(session: Session, idp_id: str, criteria: Criteria, offset: int,
               limit: int) -> tuple[int, list[tuple[ScimUser, User]]]:
    """One page of live resources matching every criterion, oldest first, with the total."""
    where = [ScimUser.idp_id == idp_id, ScimUser.deleted_at.is_(None),
             *(_user_condition(a, v) for a, v in criteria)]
    total = session.scalar(select(func.count()).select_from(ScimUser).where(*where)) or 0
    if limit <= 0 or offset >= total:
        return total, []
    rows = session.execute(select(ScimUser, User).join(User, User.id == ScimUser.user_id).where(*where)
                           .order_by(ScimUser.created_at, ScimUser.id).offset(offset).limit(limit))
    return total, [(row, user) for row, user in rows]


def live_users_by_scim_id(session: Session, idp_id: str, scim_ids: Iterable[str]) -> dict[str, ScimUser]:
    wanted = sorted(set(scim_ids))
    if not wanted:
        return {}
    rows = session.scalars(select(ScimUser).where(ScimUser.idp_id == idp_id, ScimUser.deleted_at.is_(None),
                                                  ScimUser.id.in_(wanted)))
    return {row.id: row for row in rows}


def groups_of(session: Session, idp_id: str, user_ids: Iterable[str]) -> dict[str, list[Group]]:
    """The SCIM groups of this IdP that each user belongs to."""
    wanted = sorted(set(user_ids))
    found: dict[str, list[Group]] = {user_id: [] for user_id in wanted}
    if not wanted:
        return found
    rows = session.execute(select(GroupMembership.user_id, Group)
                           .join(Group, Group.id == GroupMembership.group_id)
                           .where(GroupMembership.user_id.in_(wanted), Group.source == group_source(idp_id))
                           .order_by(Group.name))
    for user_id, group in rows:
        found[user_id].append(group)
    return found


def leave_groups(session: Session, idp_id: str, user_id: str) -> list[str]:
    """Take the user out of every SCIM group of this IdP; returns the group ids they left."""
    group_ids = list(session.scalars(select(GroupMembership.group_id)
                                     .join(Group, Group.id == GroupMembership.group_id)
                                     .where(GroupMembership.user_id == user_id,
                                            Group.source == group_source(idp_id))))
    if group_ids:
        session.execute(delete(GroupMembership).where(GroupMembership.user_id == user_id,
                                                      GroupMembership.group_id.in_(group_ids)))
    return sorted(group_ids)


# ------------------------------------------------------------------ groups


def group(session: Session, idp_id: str, group_id: str, *,
          for_update: bool = False) -> tuple[Group, ScimGroup] | None:
    query = (select(Group, ScimGroup).join(ScimGroup, ScimGroup.group_id == Group.id)
             .where(Group.id == group_id, ScimGroup.idp_id == idp_id))
    row = session.execute(query.with_for_update() if for_update else query).first()
    return None if row is None else (row[0], row[1])


def group_named(session: Session, idp_id: str, name: str) -> Group | None:
    """The group of this IdP's SCIM source with exactly this name (the broker's unique key)."""
    return session.scalar(select(Group).where(Group.source == group_source(idp_id), Group.name == name))


def _group_condition(idp_id: str, attribute: str, value: str) -> ColumnElement[bool]:
    if attribute == "id":
        return Group.id == value
    if attribute == "displayName":
        return ScimGroup.display_name_key == value
    if attribute == "externalId":
        return Group.external_id == value
    if attribute == "members":
        member = (select(GroupMembership.group_id).join(ScimUser, ScimUser.user_id == GroupMembership.user_id)
                  .where(ScimUser.id == value, ScimUser.idp_id == idp_id, ScimUser.deleted_at.is_(None)))
        return Group.id.in_(member)
    raise ValueError(f"no group criterion {attribute!r}")


def find_groups(session: Session, idp_id: str, criteria: Criteria, offset: int,
                limit: int) -> tuple[int, list[tuple[Group, ScimGroup]]]:
    where = [ScimGroup.idp_id == idp_id, *(_group_condition(idp_id, a, v) for a, v in criteria)]
    base = select(Group, ScimGroup).join(ScimGroup, ScimGroup.group_id == Group.id).where(*where)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    if limit <= 0 or offset >= total:
        return total, []
    rows = session.execute(base.order_by(ScimGroup.created_at, Group.id).offset(offset).limit(limit))
    return total, [(g, s) for g, s in rows]


def members_of(session: Session, idp_id: str, group_ids: Iterable[str]) -> dict[str, list[tuple[ScimUser, User]]]:
    """The members of each group, as the live SCIM resources (of this IdP) over them."""
    wanted = sorted(set(group_ids))
    found: dict[str, list[tuple[ScimUser, User]]] = {group_id: [] for group_id in wanted}
    if not wanted:
        return found
    rows = session.execute(select(GroupMembership.group_id, ScimUser, User)
                           .join(ScimUser, ScimUser.user_id == GroupMembership.user_id)
                           .join(User, User.id == ScimUser.user_id)
                           .where(GroupMembership.group_id.in_(wanted), ScimUser.idp_id == idp_id,
                                  ScimUser.deleted_at.is_(None))
                           .order_by(ScimUser.created_at, ScimUser.id))
    for group_id, row, user in rows:
        found[group_id].append((row, user))
    return found


def member_user_ids(session: Session, group_id: str) -> set[str]:
    return set(session.scalars(select(GroupMembership.user_id).where(GroupMembership.group_id == group_id)))


def change_members(session: Session, group_id: str, add: Iterable[str], remove: Iterable[str]) -> None:
    gone = sorted(set(remove))
    if gone:
        session.execute(delete(GroupMembership).where(GroupMembership.group_id == group_id,
                                                      GroupMembership.user_id.in_(gone)))
    session.add_all(GroupMembership(user_id=user_id, group_id=group_id) for user_id in sorted(set(add)))
    session.flush()


def delete_group(session: Session, group_id: str) -> None:
    """Remove a SCIM group and its memberships (the audit event keeps what it was)."""
    session.execute(delete(GroupMembership).where(GroupMembership.group_id == group_id))
    session.execute(delete(ScimGroup).where(ScimGroup.group_id == group_id))
    session.execute(delete(Group).where(Group.id == group_id))
    session.flush()
