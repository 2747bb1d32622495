"""A sign-in's writes to the user (oauth.provisioning.upsert_user, storage.users.set_groups).

A known identity's sign-in is written with explicit statements, not an ORM flush: these pin what they
write (and what they keep) and that unchanged groups cost a read and no write.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from sqlalchemy import select

from broker.federation.identity import Identity
from broker.keys.crypto import Encryptor
from broker.oauth import provisioning
from broker.storage import users
from broker.storage.models import Group, GroupMembership, UpstreamIdentity, User

T0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
ENCRYPTOR = Encryptor(os.urandom(32))


def identity(**changes: Any) -> Identity:
    values: dict[str, Any] = {"idp_id": "okta", "subject": "00u1", "email": "ann@example.com",
                              "email_verified": True, "name": "Ann Example", "groups": ("engineering",),
                              "claims": {"sub": "00u1", "nonce": "n-1", "amr": ["pwd"]}, "auth_time": None,
                              "acr": None, "amr": ("pwd",)}
    return Identity(**{**values, **changes})


def sign_in(database: Any, who: Identity, now: dt.datetime) -> Any:
    with database.transaction() as session:
        return provisioning.upsert_user(session, who, ENCRYPTOR, now)


def test_a_first_sign_in_creates_the_user_and_a_later_one_updates_it(migrated) -> None:
    first = sign_in(migrated, identity(), T0)
    later = T0 + dt.timedelta(hours=1)
    again = sign_in(migrated, identity(email="ann.new@example.com", name="Ann New",
                                       claims={"sub": "00u1", "acr": "mfa"}), later)
    assert again.id == first.id and again.status == "active"
    assert (again.email, again.display_name) == ("ann.new@example.com", "Ann New")
    assert again.login_idp_id == "okta" and again.login_claims == {"sub": "00u1", "acr": "mfa", "email_verified": True}
    with migrated.sessions() as session:
        user = session.get(User, first.id)
        assert user.last_login_at == later and user.updated_at == later
        [record] = session.scalars(select(UpstreamIdentity).where(UpstreamIdentity.user_id == first.id))
        assert record.email == "ann.new@example.com" and record.last_login_at == later
        assert "nonce" not in record.claims  # never stored


@pytest.mark.parametrize("absent", [None, ""])
def test_a_sign_in_without_an_email_or_a_name_keeps_the_stored_ones(migrated, absent: str | None) -> None:
    first = sign_in(migrated, identity(), T0)
    again = sign_in(migrated, identity(email=absent, name=absent), T0 + dt.timedelta(minutes=5))
    assert (again.email, again.display_name) == ("ann@example.com", "Ann Example")
    with migrated.sessions() as session:
        [record] = session.scalars(select(UpstreamIdentity).where(UpstreamIdentity.user_id == first.id))
        assert record.email is None  # the identity records what this IdP vouched for, the user keeps a known email


def test_an_upstream_refresh_token_is_stored_encrypted_for_its_identity(migrated) -> None:
    account = sign_in(migrated, identity(upstream_refresh_token="upstream-rt-1"), T0)
    with migrated.sessions() as session:
        [record] = session.scalars(select(UpstreamIdentity).where(UpstreamIdentity.user_id == account.id))
        stored = record.refresh_token_encrypted
        assert stored and b"upstream-rt-1" not in stored
        assert ENCRYPTOR.decrypt(stored, f"upstream-refresh-token:{record.id}") == b"upstream-rt-1"


def test_unchanged_groups_are_read_and_not_rewritten(migrated, monkeypatch) -> None:
    account = sign_in(migrated, identity(groups=("engineering", "ops")), T0)
    with migrated.transaction() as session:
        writes: list[Any] = []
        monkeypatch.setattr(session, "execute", lambda *a, **k: writes.append(a))
        monkeypatch.setattr(session, "add_all", lambda *a, **k: writes.append(a))
        users.set_groups(session, account.id, "idp:okta", ["ops", "engineering"])
        assert writes == []


def test_changed_groups_become_exactly_the_new_set_and_other_sources_stay(migrated) -> None:
    account = sign_in(migrated, identity(groups=("engineering", "ops")), T0)
    with migrated.transaction() as session:
        users.set_groups(session, account.id, "scim:okta", ["payroll"])
    sign_in(migrated, identity(groups=("engineering", "security")), T0 + dt.timedelta(hours=1))
    with migrated.sessions() as session:
        by_source = {(source, name) for source, name in session.execute(
            select(Group.source, Group.name).join(GroupMembership, GroupMembership.group_id == Group.id)
            .where(GroupMembership.user_id == account.id))}
    assert by_source == {("idp:okta", "engineering"), ("idp:okta", "security"), ("scim:okta", "payroll")}
