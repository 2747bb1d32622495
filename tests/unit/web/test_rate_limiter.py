"""Rate limits: fixed windows per key, the middleware's keys and refusals, on an injectable clock."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from broker import config
from broker.web.ratelimit import FixedWindows, RateLimit, RateLimiter, Rule, limiter_for
from tests.support.clock import FakeClock

WINDOW_START = 1_200.0  # the start of a 60 s window


class EchoApp:
    """Answers 200 with the body it was given, so a test sees that the middleware replayed it intact."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


def limited(clock: FakeClock, *, per_client: int = 0, per_address: int = 0, window: int = 60,
            max_keys: int = 1000) -> tuple[RateLimiter, EchoApp, list[tuple[str, str]]]:
    rules = {group: Rule(window, per_client, per_address) for group in ("token", "authorize", "registration", "scim")}
    limiter, app, refused = RateLimiter(rules, max_keys, clock), EchoApp(), []
    return limiter, app, refused


def http(limiter: RateLimiter, app: EchoApp, refused: list, address: str = "10.0.0.1") -> httpx.AsyncClient:
    middleware = RateLimit(app, limiter, refused=lambda group, kind: refused.append((group, kind)))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware, client=(address, 4711)),
                             base_url="http://broker.test")


# ---------------------------------------------------------------- the counting

def test_the_limit_plus_one_request_in_a_window_waits_for_the_window_to_end() -> None:
    windows = FixedWindows(limit=3, window=60, max_keys=10)
    for _ in range(3):
        assert windows.retry_after("k", 120.0) == 0
        windows.add("k")
    assert windows.retry_after("k", 130.0) == pytest.approx(50.0)
    assert windows.retry_after("other", 130.0) == 0
    assert windows.retry_after("k", 180.0) == 0  # the next window starts from nothing


def test_past_max_keys_new_keys_pass_uncounted_until_the_window_ends() -> None:
    windows = FixedWindows(limit=1, window=60, max_keys=2)
    for key in ("a", "b", "c", "c"):
        assert windows.retry_after(key, 0.0) == 0 or key == "a"
        windows.add(key)
    assert len(windows.counts) == 2 and windows.retry_after("c", 1.0) == 0
    assert windows.retry_after("a", 1.0) > 0  # keys already known stay limited


def test_a_refused_request_counts_against_no_key() -> None:
    clock = FakeClock(WINDOW_START)
    limiter = RateLimiter({"token": Rule(60, per_client=5, per_address=1)}, clock=clock)
    assert limiter.hit("token", "10.0.0.1", "c1") is None
    assert limiter.hit("token", "10.0.0.1", "c1")[1] == "address"
    assert limiter.hit("token", "10.0.0.2", "c1") is None  # c1 spent 2 of 5, not 3


def test_each_worker_enforces_its_share_of_a_limit() -> None:
    settings = config.load(None, env={}, defaults={
        "mode": "dev", "issuer": "http://127.0.0.1:8000", "server": {"workers": 4},
        "rate_limits": {"token": {"per_client": 10, "per_address": 0}, "authorize": {"per_client": 0,
                                                                                     "per_address": 0}}})
    limiter = limiter_for(settings)
    assert limiter is not None and limiter.applies("token") and not limiter.applies("authorize")
    assert [limiter.hit("token", "a", "c") for _ in range(4)][-1] is not None  # ceil(10 / 4) = 3


def test_limits_can_be_switched_off() -> None:
    settings = config.load(None, env={}, defaults={"mode": "dev", "issuer": "http://127.0.0.1:8000",
                                                   "rate_limits": {"enabled": False}})
    assert limiter_for(settings) is None


# ---------------------------------------------------------------- the middleware

async def test_token_requests_are_limited_per_client_from_basic_auth_or_the_form() -> None:
    clock = FakeClock(WINDOW_START)
    limiter, app, refused = limited(clock, per_client=2)
    async with http(limiter, app, refused) as client:
        assert (await client.post("/token", data={"grant_type": "x"}, auth=("c1", "s"))).status_code == 200
        assert (await client.post("/token", data={"grant_type": "x", "client_id": "c1"})).status_code == 200
        third = await client.post("/token", data={"grant_type": "x", "client_id": "c1"})
        assert third.status_code == 429 and third.json()["error"] == "temporarily_unavailable"
        assert third.headers["retry-after"] == "60" and third.headers["cache-control"] == "no-store"
        assert (await client.post("/token", data={"grant_type": "x"}, auth=("c2", "s"))).status_code == 200
    assert refused == [("token", "client")]
    assert app.bodies[1] == b"grant_type=x&client_id=c1"  # read for the key, replayed whole to the app


async def test_token_requests_are_limited_per_address_and_other_addresses_are_unaffected() -> None:
    clock = FakeClock(WINDOW_START)
    limiter, app, refused = limited(clock, per_address=2)
    async with http(limiter, app, refused, "10.0.0.1") as one, http(limiter, app, refused, "10.0.0.2") as two:
        for _ in range(2):
            assert (await one.post("/token", data={"client_id": f"c{_}"})).status_code == 200
        assert (await one.post("/token", data={"client_id": "c9"})).status_code == 429
        assert (await two.post("/token", data={"client_id": "c9"})).status_code == 200
        clock.now += 60  # the window ends: the address may ask again
        assert (await one.post("/token", data={"client_id": "c9"})).status_code == 200
    assert refused == [("token", "address")]


async def test_retry_after_counts_down_to_the_end_of_the_window() -> None:
    clock = FakeClock(1_000.0)  # the window is [960, 1020)
    limiter, app, refused = limited(clock, per_address=1)
    async with http(limiter, app, refused) as client:
        await client.get("/authorize")
        clock.now = 1_010.4
        assert (await client.get("/authorize")).headers["retry-after"] == "10"


async def test_authorize_is_limited_per_client_id_of_the_query_with_an_html_page() -> None:
    clock = FakeClock(WINDOW_START)
    limiter, app, refused = limited(clock, per_client=1)
    async with http(limiter, app, refused) as client:
        assert (await client.get("/authorize?client_id=a&state=1")).status_code == 200
        refusal = await client.get("/authorize?state=2&client_id=a")
        assert refusal.status_code == 429 and refusal.headers["content-type"].startswith("text/html")
        assert "Too many requests" in refusal.text and refusal.headers["retry-after"]
        assert (await client.get("/authorize?client_id=b")).status_code == 200
        assert (await client.get("/authorize/choose?client_id=a")).status_code == 200  # not a limited path


async def test_scim_is_limited_per_credential_with_a_scim_error() -> None:
    clock = FakeClock(WINDOW_START)
    limiter, app, refused = limited(clock, per_client=1)
    async with http(limiter, app, refused) as client:
        one, other = {"authorization": "Bearer one"}, {"authorization": "Bearer other"}
        assert (await client.get("/scim/v2/Users", headers=one)).status_code == 200
        refusal = await client.get("/scim/v2/Groups", headers=one)
        assert refusal.status_code == 429 and refusal.headers["content-type"] == "application/scim+json"
        assert json.loads(refusal.text)["status"] == "429"
        assert (await client.get("/scim/v2/Users", headers=other)).status_code == 200
        assert (await client.get("/scim/v2x", headers=one)).status_code == 200  # not under /scim/v2


async def test_registration_is_limited_per_address_in_its_own_style() -> None:
    clock = FakeClock(WINDOW_START)
    limiter, app, refused = limited(clock, per_address=1)
    async with http(limiter, app, refused) as client:
        assert (await client.post("/register", json={})).status_code == 200
        refusal = await client.post("/register", json={})
        assert refusal.status_code == 429 and refusal.json()["error"] == "too_many_requests"


@pytest.mark.parametrize("authorization", [b"Basic !!!", b"Basic " + base64.b64encode(b"\xff\xfe:x"), b"Basic ",
                                           b"Bearer x"])
async def test_malformed_client_credentials_fall_back_to_the_address_limit(authorization: bytes) -> None:
    clock = FakeClock(WINDOW_START)
    limiter, app, refused = limited(clock, per_client=1, per_address=3)
    async with http(limiter, app, refused) as client:
        statuses = [(await client.post("/token", content=b"grant_type=x\xff", headers={
            "authorization": authorization.decode("latin-1"), "content-type": "application/x-www-form-urlencoded"}
        )).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429] and refused == [("token", "address")]


async def test_other_paths_pass_untouched() -> None:
    clock = FakeClock(WINDOW_START)
    limiter, app, refused = limited(clock, per_client=1, per_address=1)
    async with http(limiter, app, refused) as client:
        assert {(await client.post("/revoke", content=b"x")).status_code for _ in range(5)} == {200}
