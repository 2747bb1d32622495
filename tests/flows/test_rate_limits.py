"""Rate limits on the real app: each limited endpoint answers 429 in its own style, with Retry-After."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ISSUER
from tests.support.oauth_flow import register_client

SCIM_TOKEN = secrets.token_urlsafe(30)
METRICS_TOKEN = secrets.token_urlsafe(30)
LIMITS = {"token": {"per_client": 2, "per_address": 5}, "revocation": {"per_client": 3, "per_address": 8},
          "authorize": {"per_client": 1, "per_address": 5},
          "registration": {"per_address": 1}, "scim": {"per_client": 1, "per_address": 5}}


# The limiter counts in fixed windows aligned to its clock: on the real clock two requests can straddle a window's
# edge and both pass. Every test here runs inside one window, mid-way through it.
FROZEN_NOW = 1_000_000 * 3600 + 1830.5  # 29.5 s before its 60 s window ends


@pytest.fixture(autouse=True)
def frozen_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    import broker.web
    from broker.web.ratelimit import limiter_for

    monkeypatch.setattr(broker.web, "limiter_for", lambda settings: limiter_for(settings, clock=lambda: FROZEN_NOW))


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(rate_limits=LIMITS, scim={"enabled": True, "tokens": [{"idp": "test", "token": SCIM_TOKEN}]},
                         metrics={"enabled": True, "bearer_token": METRICS_TOKEN})


def other_address(app: Any, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 5555)), base_url=ISSUER)


async def test_the_token_endpoint_answers_429_per_client_as_oauth_json(client: httpx.AsyncClient, app) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "unknown", "client_id": "client-a"}
    assert [(await client.post("/token", data=form)).status_code for _ in range(2)] == [400, 400]  # unknown client
    refused = await client.post("/token", data=form)
    assert refused.status_code == 429
    assert refused.json()["error"] == "temporarily_unavailable"
    assert refused.headers["retry-after"] == "30"  # the window's 29.5 s left, rounded up
    assert refused.headers["cache-control"] == "no-store"
    assert refused.headers["access-control-allow-origin"] == "*"  # a browser-based client can read it
    assert refused.headers["x-frame-options"] == "DENY" and refused.headers["x-request-id"]
    assert (await client.post("/token", data={**form, "client_id": "client-b"})).status_code == 400
    async with other_address(app, "192.0.2.7") as elsewhere:
        assert (await elsewhere.post("/token", data=form)).status_code == 429  # the client is over, anywhere


async def test_the_address_limit_holds_whatever_client_ids_are_named(client: httpx.AsyncClient, app) -> None:
    statuses = [(await client.post("/token", data={"grant_type": "client_credentials", "client_id": f"c{i}"},
                                   headers={"x-forwarded-for": f"198.51.100.{i}"})).status_code for i in range(6)]
    assert statuses[-1] == 429 and 429 not in statuses[:5]  # X-Forwarded-For is uvicorn's to believe, not ours
    async with other_address(app, "192.0.2.8") as elsewhere:
        assert (await elsewhere.post("/token", data={"client_id": "c0"})).status_code != 429


async def test_revocation_answers_429_per_client_as_oauth_json(client: httpx.AsyncClient, app) -> None:
    """A public client id is all /revoke needs, so it is limited like /token (and tighter by default)."""
    form = {"token": "unknown", "client_id": "public-client"}
    assert [(await client.post("/revoke", data=form)).status_code for _ in range(3)] == [400, 400, 400]
    refused = await client.post("/revoke", data=form)
    assert refused.status_code == 429 and refused.json()["error"] == "temporarily_unavailable"
    assert 1 <= int(refused.headers["retry-after"]) <= 60 and refused.headers["cache-control"] == "no-store"
    assert (await client.post("/revoke", data={**form, "client_id": "another"})).status_code == 400


async def test_authorize_answers_429_with_a_page(client: httpx.AsyncClient, state) -> None:
    client_id = register_client(state).row.id
    assert (await client.get("/authorize", params={"client_id": client_id})).status_code == 400
    refused = await client.get("/authorize", params={"client_id": client_id})
    assert refused.status_code == 429 and refused.headers["content-type"].startswith("text/html")
    assert "Too many requests" in refused.text and refused.headers["retry-after"]
    assert "location" not in refused.headers  # never a redirect to an unvalidated redirect URI


async def test_registration_answers_429_as_the_dcr_limit_does(client: httpx.AsyncClient) -> None:
    metadata = {"redirect_uris": ["http://127.0.0.1:9999/cb"], "token_endpoint_auth_method": "none"}
    assert (await client.post("/register", json=metadata)).status_code == 201
    refused = await client.post("/register", json=metadata)
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_requests"
    assert refused.headers["retry-after"]


async def test_scim_answers_429_as_a_scim_error(client: httpx.AsyncClient) -> None:
    headers = {"authorization": f"Bearer {SCIM_TOKEN}"}
    assert (await client.get("/scim/v2/Users", headers=headers)).status_code == 200
    refused = await client.get("/scim/v2/Users", headers=headers)
    assert refused.status_code == 429 and refused.headers["content-type"].startswith("application/scim+json")
    assert refused.json()["status"] == "429" and refused.headers["retry-after"]
    assert (await client.get("/scim/v2/Users", headers={"authorization": "Bearer other"})).status_code == 401


async def test_refusals_are_counted_and_measured(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await client.post("/token", data={"client_id": "client-a"})
    text = (await client.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("broker_rate_limited_total", (("group", "token"), ("key", "client")))] == 1
    assert samples[("broker_http_requests_total", (("method", "POST"), ("route", "/token"), ("status", "4xx")))] == 3


async def test_the_limits_are_on_by_default(make_settings: Any) -> None:
    from broker.web.ratelimit import limiter_for

    limiter = limiter_for(make_settings())
    assert limiter is not None and all(limiter.applies(g) for g in ("token", "revocation", "authorize", "registration",
                                                                          "scim"))
