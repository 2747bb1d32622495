"""``broker.storage.grants``, the token path's statements: codes redeemed once, refresh-token families rotated
under their conditions, revocations written once and fed while they matter, single-use JWT ids. Each on both
stores, on the lane the broker runs it on (``hot`` for the token side), and the cold twin where there is one."""

from __future__ import annotations

import datetime as dt

from broker.storage import grants, users
from broker.storage.db import Database
from broker.storage.enums import ClientKind, UserStatus
from broker.storage.models import Client, User

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, 250000, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=1)
IDLE = NOW - dt.timedelta(days=14)  # the idle cut-off of a rotation at NOW


def code(code_hash: str = "c" * 64, expires_in: int = 60) -> dict[str, object]:
    return {"code_hash": code_hash, "client_id": "app", "user_id": "u1", "redirect_uri": "https://app.example/cb",
            "resource": "https://a.example/mcp", "scope": "read", "code_challenge": "x" * 43,
            "code_challenge_method": "S256", "nonce": None, "auth_time": NOW, "acr": None, "oidc_scope": None,
            "dpop_jkt": None, "created_at": NOW, "expires_at": NOW + dt.timedelta(seconds=expires_in)}


def family(family_id: str = "f1", current: str = "r1", expires_in: dt.timedelta = dt.timedelta(days=30)) -> dict:
    return {"id": family_id, "client_id": "app", "user_id": "u1", "resource": "https://a.example/mcp",
            "scope": "read write", "current_hash": current, "generation": 0, "auth_time": NOW, "acr": None,
            "oidc_scope": None, "dpop_jkt": "k" * 43, "created_at": NOW, "last_used_at": NOW,
            "expires_at": NOW + expires_in}


def with_user(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"))


async def test_a_code_is_claimed_once_before_it_expires(database: Database) -> None:
    with_user(database)
    with database.transaction() as session:
        grants.add_code(session, **code())
        grants.add_code(session, **code("e" * 64, expires_in=-1))
    async with database.hot.write() as tx:
        claimed = await grants.claim_code_hot(tx, "c" * 64, NOW)
        assert type(claimed) is grants.CodeRow and claimed.used_at == NOW and claimed.family_id is None
        assert claimed._asdict() == {**code(), "family_id": None, "used_at": NOW}
        assert await grants.claim_code_hot(tx, "c" * 64, LATER) is None  # used
        assert await grants.claim_code_hot(tx, "e" * 64, NOW) is None  # expired
        assert await grants.claim_code_hot(tx, "n" * 64, NOW) is None  # unknown
        await grants.set_code_family_hot(tx, "c" * 64, "f1")
    async with database.hot.read() as tx:
        stored = await grants.code_hot(tx, "c" * 64)
        assert stored is not None and (stored.used_at, stored.family_id) == (NOW, "f1")
        assert await grants.code_hot(tx, "n" * 64) is None


async def test_a_family_rotates_only_from_its_current_token_for_its_client(database: Database) -> None:
    with_user(database)
    async with database.hot.write() as tx:
        started = await grants.start_family_hot(tx, **family())
        assert type(started) is grants.FamilyRow and started.revoked_at is None and started.generation == 0
        assert await grants.rotate_current_hot(tx, "r1", "r2", "other-client", LATER, IDLE) is None
        rotated = await grants.rotate_current_hot(tx, "r1", "r2", "app", LATER, IDLE)
        assert rotated is not None and (rotated.current_hash, rotated.generation, rotated.last_used_at) == (
            "r2", 1, LATER)
        assert await grants.rotate_current_hot(tx, "r1", "r3", "app", LATER, IDLE) is None  # r1 is spent
    async with database.hot.read() as tx:
        assert await grants.family_by_current_hot(tx, "r2") == rotated
        assert await grants.family_by_current_hot(tx, "r1") is None
        assert await grants.family_by_rotated_hot(tx, "r1") == rotated  # a replay finds its family
        assert await grants.family_by_rotated_hot(tx, "r2") is None
    with database.transaction() as session:
        assert grants.family_by_current(session, "r2") == rotated  # the same row on both lanes
        assert grants.family_by_current(session, "r1") is None


async def test_rotation_refuses_expired_idle_and_revoked_families(database: Database) -> None:
    with_user(database)
    async with database.hot.write() as tx:
        await grants.start_family_hot(tx, **family("f1", "expired", expires_in=dt.timedelta(seconds=30)))
        await grants.start_family_hot(tx, **family("f2", "idle"))
        await grants.start_family_hot(tx, **family("f3", "revoked"))
        assert await grants.revoke_family_hot(tx, "f3", "test", NOW) is True
        assert await grants.rotate_current_hot(tx, "expired", "x1", "app", LATER, IDLE) is None
        assert await grants.rotate_current_hot(tx, "idle", "x2", "app", LATER, NOW) is None  # unused since NOW
        assert await grants.rotate_current_hot(tx, "revoked", "x3", "app", LATER, IDLE) is None


async def test_rotate_known_rotates_a_family_read_before_once(database: Database) -> None:
    with_user(database)
    async with database.hot.write() as tx:
        started = await grants.start_family_hot(tx, **family())
        assert await grants.rotate_known_hot(tx, started, "r1", "r2", LATER, IDLE) is True
        assert await grants.rotate_known_hot(tx, started, "r1", "r3", LATER, IDLE) is False  # changed meanwhile
    async with database.hot.read() as tx:
        now_current = await grants.family_by_current_hot(tx, "r2")
        assert now_current is not None and now_current.generation == 1
        assert await grants.family_by_rotated_hot(tx, "r1") == now_current


async def test_an_unbound_family_is_bound_to_a_dpop_key_once(database: Database) -> None:
    with_user(database)
    async with database.hot.write() as tx:
        await grants.start_family_hot(tx, **{**family("f1", "r1"), "dpop_jkt": None})
        await grants.start_family_hot(tx, **family("f2", "r2"))  # bound to "k" * 43
        await grants.bind_family_hot(tx, "f1", "a" * 43)
        await grants.bind_family_hot(tx, "f1", "b" * 43)
        await grants.bind_family_hot(tx, "f2", "b" * 43)
    async with database.hot.read() as tx:
        f1, f2 = await grants.family_by_current_hot(tx, "r1"), await grants.family_by_current_hot(tx, "r2")
        assert f1 is not None and f2 is not None and (f1.dpop_jkt, f2.dpop_jkt) == ("a" * 43, "k" * 43)


async def test_families_narrow_and_are_revoked_once_with_a_feed_record(database: Database) -> None:
    with_user(database)
    async with database.hot.write() as tx:
        await grants.start_family_hot(tx, **family("f1", "r1"))
        await grants.start_family_hot(tx, **family("f2", "r2"))
        await grants.narrow_family_hot(tx, "f1", "read")
        assert await grants.revoke_family_hot(tx, "f1", "x" * 300, NOW) is True
        assert await grants.revoke_family_hot(tx, "f1", "again", LATER) is False
    with database.transaction() as session:
        assert grants.revoke_family(session, "f2", "cold", NOW) is True
        assert grants.revoke_family(session, "f2", "cold", LATER) is False
    async with database.hot.read() as tx:
        f1 = await grants.family_by_current_hot(tx, "r1")
        assert f1 is not None and (f1.scope, f1.revoked_at, f1.revoked_reason) == ("read", NOW, "x" * 200)
        fed = await grants.revocations_since_hot(tx, 0, NOW, 10)
        assert [(r.kind, r.subject) for r in fed] == [("family", "f1"), ("family", "f2")]
        assert await grants.revocations_since_hot(tx, fed[0].id, NOW, 10) == fed[1:]
        assert await grants.revocations_since_hot(tx, 0, NOW + grants.FAMILY_TOKEN_HORIZON, 10) == []  # past


async def test_a_token_id_is_revoked_once_on_either_lane(database: Database) -> None:
    expires = NOW + dt.timedelta(minutes=5)
    with database.transaction() as session:
        assert grants.revoke_token_id(session, "jti-1", expires, "leaked", "admin") is True
        assert grants.revoke_token_id(session, "jti-1", expires, "again", "admin") is False
        assert grants.is_token_id_revoked(session, "jti-1") and not grants.is_token_id_revoked(session, "jti-2")
    async with database.hot.write() as tx:
        assert await grants.revoke_token_id_hot(tx, "jti-1", expires, "again", "admin", NOW) is False
        assert await grants.revoke_token_id_hot(tx, "jti-2", expires, "leaked", "admin", NOW) is True
        fed = await grants.revocations_since_hot(tx, 0, NOW, 10)
        assert [(r.kind, r.subject) for r in fed] == [("token", "jti-1"), ("token", "jti-2")]
        assert await grants.revocations_since_hot(tx, 0, NOW, 1) == fed[:1]


async def test_access_token_standing_reads_everything_that_can_change_in_one_row(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1", status=UserStatus.OFFBOARDED, not_before=NOW))
        session.add(Client(id="app", name="App", kind=ClientKind.DCR, status="disabled"))
        grants.revoke_token_id(session, "jti-1", LATER, "leaked", "admin")
    async with database.hot.write() as tx:
        await grants.start_family_hot(tx, **family())
    with database.transaction() as session:
        cold = grants.access_token_standing(session, jti="jti-1", client_id="app", family_id="f1", user_id="u1")
        assert type(cold) is grants.TokenStanding
        assert (cold.revoked_id is not None, cold.client_status, cold.family, cold.user_status,
                cold.user_not_before) == (True, "disabled", "live", "offboarded", NOW)
        none = grants.access_token_standing(session, jti="jti-2", client_id="x", family_id=None, user_id=None)
        assert none == grants.TokenStanding(None, None, None, None, None)
    async with database.hot.read() as tx:
        assert await grants.access_token_standing_hot(tx, jti="jti-1", client_id="app", family_id="f1",
                                                      user_id="u1") == cold


async def test_a_jwt_id_is_used_once_whatever_the_lane(database: Database) -> None:
    expires = NOW + dt.timedelta(minutes=5)
    with database.transaction() as session:
        assert grants.first_use_of_jti(session, "k1", "client_assertion", expires) is True
        assert grants.first_use_of_jti(session, "k1", "client_assertion", expires) is False
    async with database.hot.write() as tx:
        assert await grants.first_use_of_jti_hot(tx, "k1", "client_assertion", expires) is False
        assert await grants.first_use_of_jti_hot(tx, "k2", "id_jag", expires) is True
        assert await grants.first_use_of_jti_hot(tx, "k2", "id_jag", expires) is False
