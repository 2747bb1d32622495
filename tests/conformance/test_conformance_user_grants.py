"""``broker.storage.user_grants``: ending all of a user's families and sign-ins, and their revocation record."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from broker.storage import grants, user_grants, users
from broker.storage.db import Database
from broker.storage.enums import RevocationKind, SignInStatus
from broker.storage.models import PendingAuthorization, RefreshTokenFamily, Revocation, User

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)
EARLIER = NOW - dt.timedelta(hours=1)


def family(family_id: str, user_id: str, revoked_at: dt.datetime | None = None) -> RefreshTokenFamily:
    return RefreshTokenFamily(id=family_id, client_id="app", user_id=user_id, resource="https://a.example/mcp",
                              current_hash=family_id * 8, created_at=EARLIER, last_used_at=EARLIER,
                              expires_at=NOW + dt.timedelta(days=30), revoked_at=revoked_at,
                              revoked_reason="before" if revoked_at else None)


def sign_in(pending_id: str, user_id: str | None, status: SignInStatus) -> PendingAuthorization:
    return PendingAuthorization(id=pending_id, browser_hash="b", status=status, client_id="app",
                                redirect_uri="https://app.example/cb", resource="https://a.example/mcp",
                                server_id="a", code_challenge="c" * 43, code_challenge_method="S256", idp_id="test",
                                upstream_state_hash=pending_id * 8, upstream_nonce="n",
                                upstream_verifier_encrypted=b"v", user_id=user_id, created_at=NOW,
                                expires_at=NOW + dt.timedelta(minutes=10))


def test_revoke_families_ends_the_users_live_families_alone(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        grants.add(session, family("f1", "u1"), family("f2", "u1"), family("f3", "u1", revoked_at=EARLIER),
                   family("f4", "u2"))
    with database.transaction() as session:
        assert user_grants.revoke_families(session, "u1", "x" * 300, NOW) == 2
    with database.transaction() as session:
        f1, f3, f4 = (user_grants.family(session, i) for i in ("f1", "f3", "f4"))
        assert all(type(f) is grants.FamilyRow for f in (f1, f3, f4))
        assert f1 is not None and f3 is not None and f4 is not None
        assert (f1.revoked_at, f1.revoked_reason) == (NOW, "x" * user_grants.REASON_LENGTH)
        assert (f3.revoked_at, f3.revoked_reason) == (EARLIER, "before")  # revoked once
        assert f4.revoked_at is None
        assert user_grants.family(session, "nope") is None
        assert user_grants.revoke_families(session, "u1", "again", NOW) == 0


def test_fail_sign_ins_fails_the_users_sign_ins_in_the_given_steps(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        grants.add(session, sign_in("p1", "u1", SignInStatus.CONSENT), sign_in("p2", "u1", SignInStatus.DONE),
                   sign_in("p3", "u2", SignInStatus.CONSENT), sign_in("p4", None, SignInStatus.LOGIN))
    with database.transaction() as session:
        assert user_grants.fail_sign_ins(session, "u1", [SignInStatus.CONSENT, SignInStatus.CALLBACK]) == 1
    with database.transaction() as session:
        statuses = {row.id: row.status for row in session.scalars(select(PendingAuthorization))}
        assert statuses == {"p1": "failed", "p2": "done", "p3": "consent", "p4": "login"}


def test_record_revocation_is_a_user_record_with_its_not_before(database: Database) -> None:
    with database.transaction() as session:
        user_grants.record_revocation(session, "u1", reason="left", actor="admin@example.com", now=NOW)
    with database.transaction() as session:
        recorded = list(session.scalars(select(Revocation)))
        assert [(r.kind, r.subject, r.not_before, r.reason, r.actor, r.expires_at) for r in recorded] == [
            (RevocationKind.USER, "u1", NOW, "left", "admin@example.com", None)]


def test_live_families_are_the_users_unrevoked_most_recently_used_first(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        rows = [family("f1", "u1"), family("f2", "u1"), family("f3", "u1", revoked_at=EARLIER), family("f4", "u2")]
        rows[1].last_used_at = NOW
        grants.add(session, *rows)
    with database.transaction() as session:
        assert [f.id for f in user_grants.live_families(session, "u1", 10)] == ["f2", "f1"]
        assert all(type(f) is grants.FamilyRow for f in user_grants.live_families(session, "u1", 10))
        assert [f.id for f in user_grants.live_families(session, "u1", 1)] == ["f2"]
        assert user_grants.live_families(session, "nobody", 10) == []
