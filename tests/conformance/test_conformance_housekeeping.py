"""``broker.storage.housekeeping``: a pass deletes only rows whose window has passed, at most a batch per table."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from broker.storage import housekeeping
from broker.storage.db import Database
from broker.storage.models import (
    AdminSession,
    AuthorizationCode,
    Base,
    PendingAuthorization,
    RefreshTokenFamily,
    RotatedRefreshToken,
    SeenJti,
    User,
)

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
OLD, FRESH = NOW - dt.timedelta(days=3), NOW + dt.timedelta(minutes=5)
LONG_AGO = NOW - housekeeping.SESSION_RETENTION - dt.timedelta(minutes=1)


def pending(id_: str, expires: dt.datetime) -> PendingAuthorization:
    return PendingAuthorization(id=id_, browser_hash="b", client_id="c", redirect_uri="r", resource="x", server_id="s",
                                code_challenge="c" * 43, code_challenge_method="S256", idp_id="test",
                                upstream_state_hash=id_ * 8, upstream_nonce="n", upstream_verifier_encrypted=b"",
                                created_at=OLD, expires_at=expires)


def code(hash_: str, expires: dt.datetime) -> AuthorizationCode:
    return AuthorizationCode(code_hash=hash_, client_id="c", user_id="u", redirect_uri="r", resource="x",
                             code_challenge="c" * 43, code_challenge_method="S256", expires_at=expires)


def family(id_: str, expires: dt.datetime) -> RefreshTokenFamily:
    return RefreshTokenFamily(id=id_, client_id="c", user_id="u", resource="x", current_hash=id_ * 8,
                              expires_at=expires, created_at=OLD, last_used_at=OLD)


def console(id_: str, expires: dt.datetime) -> AdminSession:
    return AdminSession(id=id_, user_id="u", idp_id="test", csrf_secret="s", created_at=OLD, last_seen_at=OLD,
                        expires_at=expires)


def count(db: Database, model: type[Base]) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_purge_keeps_what_still_matters(database: Database) -> None:
    with database.transaction() as session:
        session.add(User(id="u", email="u@example.com"))
        session.flush()
        session.add_all([pending("p-old", OLD), pending("p-new", FRESH), code("c-old", OLD), code("c-new", FRESH),
                         SeenJti(key_hash="j-old", purpose="t", expires_at=OLD),
                         SeenJti(key_hash="j-new", purpose="t", expires_at=FRESH),
                         family("f-old", OLD), family("f-new", FRESH),
                         console("a-old", LONG_AGO), console("a-recent", OLD)])
        session.flush()
        session.add_all([RotatedRefreshToken(token_hash="r-old", family_id="f-old"),
                         RotatedRefreshToken(token_hash="r-new", family_id="f-new")])
    with database.transaction() as session:
        purged = housekeeping.purge_expired(session, NOW)
    assert purged == {"pending_authorizations": 1, "authorization_codes": 1, "seen_jtis": 1,
                      "rotated_refresh_tokens": 1, "admin_sessions": 1}
    assert [count(database, m) for m in (PendingAuthorization, AuthorizationCode, SeenJti, RotatedRefreshToken,
                                         RefreshTokenFamily, AdminSession)] == [1, 1, 1, 1, 2, 1]  # families stay
    with database.transaction() as session:
        assert set(housekeeping.purge_expired(session, NOW).values()) == {0}


def test_a_pass_deletes_at_most_a_batch_per_table(database: Database) -> None:
    with database.transaction() as session:
        session.add_all([SeenJti(key_hash=f"j{i}", purpose="t", expires_at=OLD) for i in range(5)])
    with database.transaction() as session:
        assert housekeeping.purge_expired(session, NOW, batch=2)["seen_jtis"] == 2
    assert count(database, SeenJti) == 3
