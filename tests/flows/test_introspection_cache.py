"""Introspection checks an access token's signature once (``VerifiedAccessTokens``); the answer still
follows the clock, the published keys and every revocation, on every call."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broker.oauth.secrets import digest
from broker.oauth.verification import VerifiedAccessTokens
from broker.storage.models import SigningKey
from tests.support.oauth_flow import register_client, tokens_for


async def introspect(client: httpx.AsyncClient, rs: Any, token: str) -> dict[str, Any]:
    response = await client.post("/introspect", data={"token": token}, auth=(rs.row.id, rs.secret))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def issued(client: httpx.AsyncClient, state: Any) -> tuple[Any, str, str]:
    user_client = register_client(state)
    rs = register_client(state, name="RS", auth_method="client_secret_basic", redirect_uris=[],
                         grant_types=("client_credentials",), may_introspect=True)
    return rs, (await tokens_for(client, user_client.row.id))["access_token"], user_client.row.id


async def test_a_token_is_verified_once_then_answered_from_the_cache(client, state, issued, monkeypatch) -> None:
    rs, token, _ = issued
    verified = state.oauth.engine.verified_access_tokens
    first = await introspect(client, rs, token)
    assert first["active"] is True and digest(token) in verified._entries
    monkeypatch.setattr("broker.oauth.verification.jwt.decode", lambda *a, **k: pytest.fail("verified again"))
    assert await introspect(client, rs, token) == first


async def test_a_cached_token_still_expires(client, state, issued, monkeypatch) -> None:
    rs, token, _ = issued
    first = await introspect(client, rs, token)
    assert first["active"] is True
    expired = dt.datetime.fromtimestamp(first["exp"], dt.UTC)
    monkeypatch.setattr(state.oauth, "now", lambda: expired)
    assert await introspect(client, rs, token) == {"active": False}


async def test_a_cached_token_dies_with_its_key(client, state, issued) -> None:
    rs, token, _ = issued
    assert (await introspect(client, rs, token))["active"] is True
    retired = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=state.settings.longest_jwt_lifetime + 60)
    with state.database.transaction() as session:  # retired before any token it signed could still be alive
        for key in session.scalars(select(SigningKey).where(SigningKey.purpose == "broker")):
            key.retired_at = retired
    assert await introspect(client, rs, token) == {"active": False}


async def test_a_cached_token_is_still_revocable(client, state, issued) -> None:
    rs, token, client_id = issued
    assert (await introspect(client, rs, token))["active"] is True
    revoked = await client.post("/revoke", data={"token": token, "client_id": client_id})
    assert revoked.status_code == 200
    assert await introspect(client, rs, token) == {"active": False}


async def test_a_forged_token_with_a_cached_tokens_header_is_refused(client, state, issued) -> None:
    rs, token, _ = issued
    assert (await introspect(client, rs, token))["active"] is True
    header, claims, signature = token.split(".")
    forged = f"{header}.{claims}.{signature[:-4]}AAAA"
    assert await introspect(client, rs, forged) == {"active": False}


def test_the_cache_is_bounded_oldest_out() -> None:
    cache = VerifiedAccessTokens(size=2)
    keys = {"k": {"kid": "k", "alg": "ES256"}}
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for name in ("a", "b", "c"):
        cache.put(name, "k", "ES256", {"exp": now.timestamp() + 60})
    assert cache.get("a", keys, now) is None and cache.get("c", keys, now) is not None
    assert cache.get("b", {"k": {"kid": "k", "alg": "RS256"}}, now) is None  # the kid now names another algorithm
