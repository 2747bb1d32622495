"""Refresh-token families: idle and absolute lifetimes, rotation, reuse (``oauth.engine.families``)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from broker.oauth.engine import families
from broker.oauth.engine.context import Call, Grant
from broker.oauth.errors import InvalidGrantError
from broker.oauth.params import Params
from broker.oauth.tokens import RefreshTokens
from broker.storage.models import User

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def in_grant(migrated, settings, now, step):
    """``step(grant)`` in one hot-lane transaction at ``now``; as at the token endpoint, an OAuth error is an
    answer and the transaction still commits (so a detected reuse stays revoked)."""
    engine = SimpleNamespace(refresh_tokens=RefreshTokens(settings))
    async with migrated.hot.write() as tx:
        try:
            return await step(Grant(engine, tx, Call(Params([]), None, None, now)))
        except InvalidGrantError as exc:
            error = exc
    raise error


@pytest.fixture
async def family(settings, migrated):
    with migrated.transaction() as session:
        session.add(User(id="u1", email="u@example.com"))
    grant = await in_grant(migrated, settings, T0, lambda g: families.start(
        g, client_id="c1", user_id="u1", resource="https://r.example", scopes=["a"], auth_time=T0, acr=None,
        oidc_scope=None))

    async def rotate(token, now, client="c1"):
        return (await in_grant(migrated, settings, now, lambda g: families.rotate(g, token, client))).token

    return rotate, grant.token


async def test_rotation_inside_the_idle_window(settings, family) -> None:
    rotate, token = family
    idle = dt.timedelta(seconds=settings.tokens.refresh_token_idle_lifetime)
    second = await rotate(token, T0 + idle / 2)
    third = await rotate(second, T0 + idle)  # the idle clock restarts at each use
    assert third not in (token, second)


async def test_idle_expiry(settings, family) -> None:
    rotate, token = family
    with pytest.raises(InvalidGrantError, match="inactivity"):
        await rotate(token, T0 + dt.timedelta(seconds=settings.tokens.refresh_token_idle_lifetime))


async def test_absolute_expiry_even_when_used_often(settings, family) -> None:
    rotate, token = family
    idle = dt.timedelta(seconds=settings.tokens.refresh_token_idle_lifetime - 60)
    absolute = T0 + dt.timedelta(seconds=settings.tokens.refresh_token_absolute_lifetime)
    now = T0
    with pytest.raises(InvalidGrantError, match="expired"):
        while now <= absolute + idle:
            now += idle
            token = await rotate(token, now)


async def test_reuse_revokes_and_unknown_is_refused(family) -> None:
    rotate, token = family
    rotated = await rotate(token, T0)
    with pytest.raises(InvalidGrantError, match="already used"):
        await rotate(token, T0)
    with pytest.raises(InvalidGrantError, match="revoked"):
        await rotate(rotated, T0)
    with pytest.raises(InvalidGrantError, match="unknown"):
        await rotate("nonsense", T0)
