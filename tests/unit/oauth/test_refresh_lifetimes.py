"""Refresh-token families: idle and absolute lifetimes, rotation, reuse."""

from __future__ import annotations

import datetime as dt

import pytest

from broker.oauth.errors import InvalidGrantError
from broker.oauth.tokens import RefreshTokens
from broker.storage.models import User

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def family(settings, migrated):
    tokens = RefreshTokens(settings)
    with migrated.transaction() as session:
        session.add(User(id="u1", email="u@example.com"))
        session.flush()
        grant = tokens.start(session, client_id="c1", user_id="u1", resource="https://r.example", scopes=["a"],
                             auth_time=T0, acr=None, now=T0)
    return tokens, grant.token


def rotate(migrated, tokens, token, now, client="c1"):
    """As the token endpoint does: an OAuth error is a response, and the transaction still commits
    (so a detected reuse stays revoked)."""
    with migrated.transaction() as session:
        try:
            return tokens.rotate(session, token, client, now).token
        except InvalidGrantError as exc:
            error = exc
    raise error


def test_rotation_inside_the_idle_window(settings, migrated, family) -> None:
    tokens, token = family
    idle = dt.timedelta(seconds=settings.tokens.refresh_token_idle_lifetime)
    second = rotate(migrated, tokens, token, T0 + idle / 2)
    third = rotate(migrated, tokens, second, T0 + idle)  # the idle clock restarts at each use
    assert third not in (token, second)


def test_idle_expiry(settings, migrated, family) -> None:
    tokens, token = family
    with pytest.raises(InvalidGrantError, match="inactivity"):
        rotate(migrated, tokens, token, T0 + dt.timedelta(seconds=settings.tokens.refresh_token_idle_lifetime))


def test_absolute_expiry_even_when_used_often(settings, migrated, family) -> None:
    tokens, token = family
    idle = dt.timedelta(seconds=settings.tokens.refresh_token_idle_lifetime - 60)
    absolute = T0 + dt.timedelta(seconds=settings.tokens.refresh_token_absolute_lifetime)
    now = T0
    with pytest.raises(InvalidGrantError, match="expired"):
        while now <= absolute + idle:
            now += idle
            token = rotate(migrated, tokens, token, now)


def test_reuse_revokes_and_unknown_is_refused(migrated, family) -> None:
    tokens, token = family
    rotated = rotate(migrated, tokens, token, T0)
    with pytest.raises(InvalidGrantError, match="already used"):
        rotate(migrated, tokens, token, T0)
    with pytest.raises(InvalidGrantError, match="revoked"):
        rotate(migrated, tokens, rotated, T0)
    with pytest.raises(InvalidGrantError, match="unknown"):
        rotate(migrated, tokens, "nonsense", T0)
