"""A revocation and a token in the same whole second of ``iat``: /introspect and an MCP server following the
revocation feed (``broker.resource``) agree, and both are right in both directions. A token issued earlier in
the revocation's second is dead; one issued later in it (after a CAEP event, a restore) lives.

Every instant is set by hand: the broker's clock (``state.oauth.now``), the instant each revocation is made
(the receivers' ``utcnow``) and the MCP server's clock, all inside one whole second S.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import httpx
import jwt
import pytest

from broker.resource import BrokerTokenVerifier, RevocationFeed
from tests.conftest import ISSUER
from tests.flows.test_security_signals import JWK, SESSION_REVOKED, TRANSMITTER, push, signed_set
from tests.support.oauth_flow import DEMO_RESOURCE, register_client, tokens_for


@pytest.fixture
def settings(make_settings: Any) -> Any:
    sender = {"issuer": TRANSMITTER, "jwks_uri": f"{TRANSMITTER}/jwks", "idp": "test", "algorithms": ["ES256"]}
    return make_settings(signals={"ssf_transmitters": [{"id": "idp-ssf", **sender}]})


@pytest.fixture(autouse=True)
def transmitter_keys(loopback: Any) -> None:
    loopback.others["idp.example"] = lambda request: httpx.Response(200, json={"keys": [JWK]})


@pytest.fixture
def second(state: Any) -> float:
    """S: the whole second every instant of a test falls in (the next one: the signing key is older)."""
    return float(math.floor(time.time()) + 1)


def instant(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.UTC)


def broker_clock(monkeypatch: pytest.MonkeyPatch, state: Any, at: float) -> None:
    monkeypatch.setattr(state.oauth, "now", lambda: instant(at))


def revocation_clock(monkeypatch: pytest.MonkeyPatch, module: str, at: float) -> None:
    monkeypatch.setattr(f"{module}.utcnow", lambda: instant(at))


async def alice_at(client: httpx.AsyncClient, state: Any, monkeypatch: pytest.MonkeyPatch, app_client: Any,
                   at: float) -> str:
    """An access token for alice, issued at ``at``."""
    broker_clock(monkeypatch, state, at)
    return (await tokens_for(client, app_client.row.id))["access_token"]


async def introspected(client: httpx.AsyncClient, rs: Any, token: str) -> bool:
    response = await client.post("/introspect", data={"token": token}, auth=(rs.row.id, rs.secret))
    return response.json()["active"]


async def follower_accepts(app: Any, rs: Any, at: float, *tokens: str) -> list[bool]:
    """What an MCP server that follows the feed, with its clock at ``at``, says of each token."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        feed = RevocationFeed(ISSUER, rs.row.id, rs.secret, http=http, clock=lambda: at)
        await feed.poll_once()
        verifier = BrokerTokenVerifier(ISSUER, DEMO_RESOURCE, http=http, clock=lambda: at, is_revoked=feed.is_revoked)
        return [await verifier.verify_token(token) is not None for token in tokens]


def iat(token: str) -> int:
    return jwt.decode(token, options={"verify_signature": False})["iat"]


@pytest.fixture
def parties(state: Any) -> tuple[Any, Any]:
    rs = register_client(state, name="Demo MCP server", auth_method="client_secret_basic", redirect_uris=[],
                         grant_types=(), may_introspect=True)
    return rs, register_client(state, trusted=True)


async def test_a_token_from_earlier_in_the_offboarding_second_is_dead_everywhere(
        client: httpx.AsyncClient, app: Any, state: Any, cli: Any, monkeypatch: pytest.MonkeyPatch, second: float,
        parties: tuple[Any, Any]) -> None:
    rs, app_client = parties
    before = await alice_at(client, state, monkeypatch, app_client, second + 0.1)
    assert iat(before) == second
    revocation_clock(monkeypatch, "broker.cli.users", second + 0.5)
    assert cli(["users", "revoke", "alice@example.com", "--reason", "left"]) == 0
    broker_clock(monkeypatch, state, second + 0.9)
    assert not await introspected(client, rs, before)
    assert await follower_accepts(app, rs, second + 0.9, before) == [False]


async def test_a_token_from_later_in_a_caep_events_second_lives_everywhere(
        client: httpx.AsyncClient, app: Any, state: Any, monkeypatch: pytest.MonkeyPatch, second: float,
        parties: tuple[Any, Any]) -> None:
    rs, app_client = parties
    before = await alice_at(client, state, monkeypatch, app_client, second + 0.1)
    revocation_clock(monkeypatch, "broker.web.signals", second + 0.3)
    caep = signed_set({SESSION_REVOKED: {}}, {"format": "iss_sub", "iss": TRANSMITTER, "sub": "alice"})
    assert (await push(client, caep)).status_code == 202
    after = await alice_at(client, state, monkeypatch, app_client, second + 0.6)
    broker_clock(monkeypatch, state, second + 0.9)
    assert [await introspected(client, rs, t) for t in (before, after)] == [False, True]
    assert await follower_accepts(app, rs, second + 0.9, before, after) == [False, True]
    assert iat(after) == second + 1  # signed a whole second on, so no reader takes it for an earlier one
    broker_clock(monkeypatch, state, second + 2.5)
    assert await introspected(client, rs, after)  # and later on, of course


async def test_a_token_from_after_a_restore_in_the_offboarding_second_lives_everywhere(
        client: httpx.AsyncClient, app: Any, state: Any, cli: Any, monkeypatch: pytest.MonkeyPatch, second: float,
        parties: tuple[Any, Any]) -> None:
    rs, app_client = parties
    before = await alice_at(client, state, monkeypatch, app_client, second + 0.1)
    revocation_clock(monkeypatch, "broker.cli.users", second + 0.2)
    assert cli(["users", "revoke", "alice@example.com", "--reason", "mistake"]) == 0
    revocation_clock(monkeypatch, "broker.cli.users", second + 0.3)
    assert cli(["users", "restore", "alice@example.com", "--reason", "mistake"]) == 0
    after = await alice_at(client, state, monkeypatch, app_client, second + 0.6)
    broker_clock(monkeypatch, state, second + 0.9)
    assert [await introspected(client, rs, t) for t in (before, after)] == [False, True]
    assert await follower_accepts(app, rs, second + 0.9, before, after) == [False, True]
