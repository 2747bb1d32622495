"""``broker.storage.users``: the user list, identities and the count of a user's live refresh-token families."""

from __future__ import annotations

import datetime as dt

from broker.storage import grants, users
from broker.storage.db import Database
from broker.storage.enums import UserStatus
from broker.storage.models import AdminSession, RefreshTokenFamily, UpstreamIdentity, User
from broker.storage.users import UserRow

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)


def family(family_id: str, user_id: str, *, revoked: bool = False, expired: bool = False) -> RefreshTokenFamily:
    return RefreshTokenFamily(id=family_id, client_id="app", user_id=user_id, resource="https://a.example/mcp",
                              current_hash=family_id * 8, created_at=NOW, last_used_at=NOW,
                              expires_at=NOW + dt.timedelta(days=-1 if expired else 30),
                              revoked_at=NOW if revoked else None)


def test_list_all_is_by_email_then_id_and_narrows_by_status(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u3", email="b@example.com"), User(id="u2", email="a@example.com"),
                  User(id="u1", email="b@example.com", status=UserStatus.OFFBOARDED))
    with database.transaction() as session:
        assert [u.id for u in users.list_all(session)] == ["u2", "u1", "u3"]
        assert [u.id for u in users.list_all(session, UserStatus.OFFBOARDED)] == ["u1"]
        assert [u.id for u in users.list_all(session, UserStatus.ACTIVE)] == ["u2", "u3"]
        assert all(type(u) is UserRow for u in users.list_all(session))


def test_identities_of_a_user_are_theirs_alone_by_idp_and_subject(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        users.add(session, UpstreamIdentity(user_id="u1", idp_id="okta", subject="s2"),
                  UpstreamIdentity(user_id="u1", idp_id="entra", subject="s9"),
                  UpstreamIdentity(user_id="u1", idp_id="okta", subject="s1"),
                  UpstreamIdentity(user_id="u2", idp_id="okta", subject="s3"))
    with database.transaction() as session:
        assert [(i.idp_id, i.subject) for i in users.identities_of(session, "u1")] == [
            ("entra", "s9"), ("okta", "s1"), ("okta", "s2")]
        assert users.identities_of(session, "nobody") == []


def test_live_family_count_leaves_out_revoked_families_and_other_users(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        grants.add(session, family("f1", "u1"), family("f2", "u1", expired=True), family("f3", "u1", revoked=True),
                   family("f4", "u2"))
    with database.transaction() as session:
        assert users.live_family_count(session, "u1") == 2  # an expired family is not revoked
        assert users.live_family_count(session, "u2") == 1
        assert users.live_family_count(session, "nobody") == 0


def test_row_is_every_column_of_the_user_read_only(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1", email="ann@example.com", display_name="Ann", status=UserStatus.OFFBOARDED,
                                not_before=NOW, offboarded_at=NOW, offboard_reason="left", created_at=NOW,
                                updated_at=NOW, last_login_at=NOW))
    with database.transaction() as session:
        assert users.row(session, "u1") == UserRow("u1", "ann@example.com", "Ann", UserStatus.OFFBOARDED, NOW, NOW,
                                                   "left", NOW, NOW, NOW)
        assert users.row(session, "u2") is None


def test_with_email_is_every_match_in_any_case_oldest_first(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u2", email="Ann@Example.com", created_at=NOW),
                  User(id="u1", email="ann@example.com", created_at=NOW + dt.timedelta(seconds=1)),
                  User(id="u3", email="ann@example.org", created_at=NOW - dt.timedelta(days=1)))
    with database.transaction() as session:
        assert [u.id for u in users.with_email(session, "ANN@example.com")] == ["u2", "u1"]
        assert users.with_email(session, "nobody@example.com") == []
        assert all(type(u) is UserRow for u in users.with_email(session, "ann@example.com"))


def test_by_identity_email_finds_users_through_their_identities_once_each(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1", email="other@example.com"), User(id="u2"))
        users.add(session, UpstreamIdentity(user_id="u1", idp_id="okta", subject="a", email="Ann@example.com"),
                  UpstreamIdentity(user_id="u1", idp_id="entra", subject="b", email="ann@example.com"),
                  UpstreamIdentity(user_id="u2", idp_id="entra", subject="c", email="bob@example.com"))
    with database.transaction() as session:
        assert [u.id for u in users.by_identity_email(session, "ann@EXAMPLE.com")] == ["u1"]
        assert [u.id for u in users.by_identity_email(session, "ann@example.com", "okta")] == ["u1"]
        assert users.by_identity_email(session, "bob@example.com", "okta") == []
        assert users.by_identity_email(session, "other@example.com") == []  # the user's own email is not asked


def test_identities_holding_refresh_tokens_and_the_idps_a_user_has(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"))
        users.add(session, UpstreamIdentity(id="i1", user_id="u1", idp_id="okta", subject="a",
                                            refresh_token_encrypted=b"r1", last_login_at=NOW),
                  UpstreamIdentity(id="i2", user_id="u1", idp_id="entra", subject="b",
                                   refresh_token_encrypted=b"r2", last_login_at=NOW + dt.timedelta(minutes=1)),
                  UpstreamIdentity(id="i3", user_id="u1", idp_id="google", subject="c", last_login_at=NOW))
    with database.transaction() as session:
        latest = users.identity_with_refresh_token(session, "u1", ["okta", "entra", "google"])
        assert latest is not None and latest.id == "i2"
        only_okta = users.identity_with_refresh_token(session, "u1", ["okta"])
        assert only_okta is not None and only_okta.id == "i1"
        assert users.identity_with_refresh_token(session, "u1", ["google"]) is None
        assert users.idps_of(session, "u1", ["okta", "google", "gitlab"]) == ["google", "okta"]
        assert users.idps_of(session, "u1", []) == []
        found = users.identity_by_id(session, "i3")
        assert found is not None and found.subject == "c" and type(found) is UpstreamIdentity
        assert users.identity_by_id(session, "nope") is None


def test_login_ids_and_latest_login_are_declared_rows(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        users.add(session, UpstreamIdentity(id="i1", user_id="u1", idp_id="okta", subject="a", claims={"x": 1},
                                            last_login_at=NOW),
                  UpstreamIdentity(id="i2", user_id="u1", idp_id="entra", subject="b", claims={"y": [2]},
                                   email="ann@example.com", last_login_at=NOW + dt.timedelta(minutes=1)),
                  UpstreamIdentity(id="i3", user_id="u1", idp_id="google", subject="c"))
    with database.transaction() as session:
        assert users.login_ids(session, "okta", "a") == users.LoginIds(id="i1", user_id="u1")
        assert type(users.login_ids(session, "okta", "a")) is users.LoginIds
        assert users.login_ids(session, "okta", "b") is None
        assert users.latest_login(session, "u1") == users.LatestLogin(idp_id="entra", claims={"y": [2]},
                                                                         email="ann@example.com")
        assert type(users.latest_login(session, "u1")) is users.LatestLogin
        assert users.latest_login(session, "u2") is None


def test_console_sessions_end_one_at_a_time_or_all_of_a_users(database: Database) -> None:
    def console(session_id: str, user_id: str) -> AdminSession:
        return AdminSession(id=session_id, user_id=user_id, idp_id="okta", csrf_secret="c", created_at=NOW,
                            last_seen_at=NOW, expires_at=NOW + dt.timedelta(hours=8))

    later = NOW + dt.timedelta(minutes=5)
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        users.add(session, console("s1", "u1"), console("s2", "u1"), console("s3", "u1"), console("s4", "u2"))
    with database.transaction() as session:
        users.end_console_session(session, "s1", NOW)
        users.end_console_session(session, "s1", later)  # ended once
        assert users.end_console_sessions(session, "u1", later) == 2
    with database.transaction() as session:
        ended = {i: getattr(users.console_session(session, i), "ended_at", "missing") for i in ("s1", "s2", "s4", "s9")}
        assert ended == {"s1": NOW, "s2": later, "s4": None, "s9": "missing"}


def test_search_matches_part_of_email_or_name_in_any_case_or_the_id(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1", email="ann_lee@example.com", display_name="Ann 100% Lee"),
                  User(id="u2", email="annxlee@example.com", display_name="Ann", status=UserStatus.OFFBOARDED),
                  User(id="u3", email="bob@example.com", display_name="Bob"))
    with database.transaction() as session:
        def ids(text: str, offset: int = 0, limit: int = 10, status: UserStatus | None = None) -> list[str]:
            return [u.id for u in users.search(session, text, offset=offset, limit=limit, status=status)]

        assert ids("") == ["u1", "u2", "u3"]
        assert ids("ANN") == ["u1", "u2"]
        assert ids("ann_") == ["u1"] and ids("100%") == ["u1"] and ids("%") == ["u1"]
        assert ids("u3") == ["u3"]
        assert ids("ann", status=UserStatus.OFFBOARDED) == ["u2"]
        assert all(type(u) is UserRow for u in users.search(session, "", offset=0, limit=10))
        assert ids("", offset=1, limit=1) == ["u2"]


def test_named_finds_users_by_id_or_exact_email(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1", email="ann@example.com", display_name="Ann"), User(id="u2", email=None),
                  User(id="u3", email="bob@example.com"))
    with database.transaction() as session:
        assert sorted(users.named(session, ids=["u1", "u2", "nope"])) == [
            users.Named("u1", "ann@example.com", "Ann"), users.Named("u2", None, "")]
        assert users.named(session, emails=["bob@example.com", "ANN@example.com"]) == [
            users.Named("u3", "bob@example.com", "")]
        assert users.named(session) == []


async def test_member_hot_is_the_account_and_its_groups_in_one_read(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1", email="a@example.com", display_name="A"), User(id="u2", display_name="B"))
        users.add(session, UpstreamIdentity(user_id="u1", idp_id="okta", subject="s1", claims={"acr": "mfa"},
                                            last_login_at=NOW))
        users.set_groups(session, "u1", "idp:okta", ["ops", "eng"])
    async with database.hot.read() as tx:
        one, two, nobody = (await users.member_hot(tx, "u1"), await users.member_hot(tx, "u2"),
                            await users.member_hot(tx, "nobody"))
        assert one is not None and one.account == await users.account_hot(tx, "u1")
        assert sorted(one.group_names) == ["eng", "ops"] == sorted(await users.group_names_hot(tx, "u1"))
        assert two is not None and two.group_names == [] and two.account == await users.account_hot(tx, "u2")
    assert nobody is None
    assert (one.account.login_idp_id, one.account.login_claims, one.account.status) == (
        "okta", {"acr": "mfa"}, UserStatus.ACTIVE)
    with database.transaction() as session:
        users.set_groups(session, "u1", "idp:okta", ["eng"])
    async with database.hot.read() as tx:
        again = await users.member_hot(tx, "u1")
    assert again is not None and again.group_names == ["eng"]
