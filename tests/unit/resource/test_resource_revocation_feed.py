"""RevocationFeed: applies the broker's feed pages and answers is_revoked from memory."""

from __future__ import annotations

import logging

import anyio
import httpx
import pytest

from broker.resource import RevocationFeed, VerifiedClaims


def claims(**overrides) -> VerifiedClaims:
    base = dict(issuer="https://b", subject="u1", audience="https://r", client_id="c1", scopes=("read",),
                jwt_id="j1", issued_at=1000, expires_at=1300, sid="f1")
    base.update(overrides)
    return VerifiedClaims(**base)


def feed_with(pages: list[dict], clock=lambda: 5000.0, **kwargs) -> tuple[RevocationFeed, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=pages.pop(0))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RevocationFeed("https://b", "rs", "secret", http=http, clock=clock, **kwargs), seen


async def test_applies_every_kind_and_follows_pages() -> None:
    feed, seen = feed_with([
        {"cursor": 2, "has_more": True, "revocations": [{"kind": "token", "jti": "j9", "at": 1},
                                                        {"kind": "family", "sid": "f1", "at": 1}]},
        {"cursor": 3, "has_more": False, "revocations": [{"kind": "user", "sub": "u2", "not_before": 2000, "at": 2}]},
    ])
    assert await feed.poll_once() == 3
    assert [r.url.params["since"] for r in seen] == ["0", "2"] and feed.cursor == 3
    assert seen[0].headers["authorization"].startswith("Basic ")
    assert feed.is_revoked(claims(jwt_id="j9", sid=None))
    assert feed.is_revoked(claims())  # family f1
    assert feed.is_revoked(claims(subject="u2", sid=None, issued_at=1999))
    assert not feed.is_revoked(claims(subject="u2", sid=None, issued_at=2000))
    assert not feed.is_revoked(claims(sid="f2", jwt_id="j2"))


@pytest.mark.parametrize("fail_closed_after,expected", [(None, False), (30.0, True)])
async def test_stale_feed_fails_open_or_closed_as_configured(fail_closed_after, expected) -> None:
    feed, _ = feed_with([], fail_closed_after=fail_closed_after)
    assert feed.is_revoked(claims(sid=None)) is expected


async def run_for(feed: RevocationFeed, polls: int) -> None:
    with anyio.move_on_after(feed.interval * (polls - 0.5)):
        await feed.run()


def failing_then(pages: list[dict], failures: int, now: list[float]) -> RevocationFeed:
    def handler(request: httpx.Request) -> httpx.Response:
        now[0] += 1.0
        if failures > len(seen):
            seen.append(request)
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=pages[0])

    seen: list[httpx.Request] = []
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RevocationFeed("https://b", "rs", "secret", http=http, clock=lambda: now[0], interval=0.01)


async def test_a_feed_not_yet_listening_at_start_is_not_a_warning(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="broker.resource.revocation")
    feed = failing_then([{"cursor": 1, "has_more": False, "revocations": []}], failures=2, now=[0.0])
    await run_for(feed, 4)
    assert feed.synced_at is not None
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in caplog.records if r.name == "broker.resource.revocation"][:1] == [
        "revocation feed unavailable: ConnectError"]  # at debug level


async def test_a_feed_unavailable_past_the_grace_is_a_warning(caplog) -> None:
    feed = failing_then([], failures=1000, now=[0.0])
    feed.startup_grace = 3.0
    await run_for(feed, 6)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and set(warnings) == {"revocation feed unavailable: ConnectError"}
