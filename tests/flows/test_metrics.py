"""Prometheus metrics: what they count, who may read them, and on which port."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.oauth_flow import authorize, pkce, refresh, register_client, tokens_for

TOKEN = "metrics-scrape-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(make_settings: Any, request: pytest.FixtureRequest) -> Any:
    """Metrics on, behind a bearer token, unless a test passes other ``metrics`` settings."""
    return make_settings(metrics=getattr(request, "param", {"enabled": True, "bearer_token": TOKEN}))


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` (0 when absent, as Prometheus would treat a counter not yet seen)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def test_a_token_issuance_is_counted_by_grant_and_server(client: httpx.AsyncClient, state) -> None:
    app_client = register_client(state, trusted=True)
    body = await tokens_for(client, app_client.row.id)
    assert (await refresh(client, app_client.row.id, body["refresh_token"])).status_code == 200
    text = await scrape(client)
    assert value(text, "broker_tokens_issued_total", grant_type="authorization_code", server="demo") == 1
    assert value(text, "broker_tokens_issued_total", grant_type="refresh_token", server="demo") == 1
    assert value(text, "broker_http_requests_total", route="/token", method="POST", status="2xx") == 2
    assert value(text, "broker_http_request_duration_seconds_count", route="/token", method="POST",
                 status="2xx") == 2
    assert value(text, "broker_http_requests_total", route="/callback/{idp_id}", method="GET", status="3xx") == 1
    assert value(text, "broker_http_requests_total", route="/testidp/token", method="POST", status="2xx") == 1
    assert value(text, "broker_audit_events_total", event_type="token.issued", outcome="success") == 1


async def test_upstream_calls_are_counted_and_timed_by_peer_and_endpoint(client: httpx.AsyncClient, state) -> None:
    app_client = register_client(state, trusted=True)
    await tokens_for(client, app_client.row.id)
    text = await scrape(client)
    for endpoint in ("discovery", "jwks", "token"):
        assert value(text, "broker_upstream_requests_total", peer_kind="idp", peer="test", endpoint=endpoint,
                     outcome="2xx") >= 1, endpoint
        assert value(text, "broker_upstream_request_duration_seconds_count", peer_kind="idp", peer="test",
                     endpoint=endpoint) >= 1, endpoint


async def test_build_info_names_the_release(client: httpx.AsyncClient) -> None:
    import platform

    from broker import __version__

    assert value(await scrape(client), "broker_build_info", version=__version__,
                 python=platform.python_version()) == 1


async def test_each_readiness_check_is_a_gauge(client: httpx.AsyncClient, state) -> None:
    from broker.storage.db import Database

    assert (await client.get("/readyz")).status_code == 200
    text = await scrape(client)
    assert [value(text, "broker_readiness_check", check=c) for c in ("shutdown", "database", "schema")] == [1, 1, 1]
    healthy, state.database = state.database, Database("postgresql://nobody@127.0.0.1:1/none")
    assert (await client.get("/readyz")).status_code == 503
    state.database = healthy
    assert value(await scrape(client), "broker_readiness_check", check="database") == 0


async def test_a_policy_denial_is_counted(client: httpx.AsyncClient, state) -> None:
    redirect = await authorize(client, register_client(state).row.id, pkce()[1], username="bob")
    assert redirect["error"] == "access_denied"
    text = await scrape(client)
    assert value(text, "broker_policy_denials_total", stage="authorize", server="demo") == 1
    assert value(text, "broker_tokens_issued_total") == 0


async def test_revocations_and_refresh_token_reuse_are_counted(client: httpx.AsyncClient, state) -> None:
    app_client = register_client(state, trusted=True)
    first = await tokens_for(client, app_client.row.id)
    rotated = (await refresh(client, app_client.row.id, first["refresh_token"])).json()
    assert (await refresh(client, app_client.row.id, first["refresh_token"])).json()["error"] == "invalid_grant"
    second = await tokens_for(client, app_client.row.id)
    revoked = await client.post("/revoke", data={"token": second["refresh_token"], "client_id": app_client.row.id})
    assert revoked.status_code == 200 and rotated["refresh_token"]
    text = await scrape(client)
    assert value(text, "broker_refresh_token_reuse_detected_total") == 1
    assert value(text, "broker_revocations_total", kind="refresh_token_reuse") == 1
    assert value(text, "broker_revocations_total", kind="family_revoked") == 1


async def test_an_offboarding_is_counted(client: httpx.AsyncClient, state) -> None:
    from tests.flows.test_offboarding import admin_token

    await tokens_for(client, register_client(state, trusted=True).row.id)  # alice signs in once
    token = await admin_token(client, state, ("security:revoke",))
    response = await client.post("/admin/api/v1/users/alice@example.com/revoke", json={"reason": "left"},
                                 headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert value(await scrape(client), "broker_revocations_total", kind="user_offboarded") == 1


async def test_a_refused_request_counts_nothing_it_did_not_do(client: httpx.AsyncClient, state) -> None:
    app_client = register_client(state, trusted=True)
    response = await refresh(client, app_client.row.id, "not-a-refresh-token")
    assert response.status_code == 400
    text = await scrape(client)
    assert value(text, "broker_tokens_issued_total") == 0
    assert value(text, "broker_http_requests_total", route="/token", method="POST", status="4xx") == 1


async def test_unknown_paths_and_methods_are_not_labels(client: httpx.AsyncClient) -> None:
    await client.get("/no/such/path/4f1c")
    await client.request("BREW", "/healthz")
    text = await scrape(client)
    assert "4f1c" not in text and "BREW" not in text
    assert value(text, "broker_http_requests_total", route="unrouted", method="GET", status="4xx") == 1
    assert value(text, "broker_http_requests_total", route="/healthz", method="other", status="4xx") == 1


async def test_process_and_database_pool_metrics_are_read_at_scrape_time(client: httpx.AsyncClient) -> None:
    text = await scrape(client)
    assert value(text, "process_resident_memory_bytes") > 0
    assert value(text, "broker_db_pool_size") >= 1
    assert value(text, "broker_db_pool_checked_out") == 0  # nothing holds a connection between requests
    assert "broker_db_pool_overflow" in text


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"},
                                     {"authorization": f"Bearer {TOKEN}x"}])
async def test_metrics_refuse_without_the_bearer_token(client: httpx.AsyncClient, headers: dict) -> None:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert "broker_" not in response.text and TOKEN not in response.text


@pytest.mark.parametrize("settings", [{}, {"enabled": True, "listen": "127.0.0.1:0"},
                                      {"enabled": False, "bearer_token": TOKEN}], indirect=True,
                         ids=["default", "separate-port-only", "disabled-with-token"])
async def test_metrics_are_absent_from_the_main_port_unless_enabled_with_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.parametrize("settings", [{"enabled": True, "listen": "127.0.0.1:0"}], indirect=True)
async def test_the_separate_port_serves_while_the_app_runs(client: httpx.AsyncClient, app, state) -> None:
    async with app.router.lifespan_context(app):
        port = state.metrics.listener.port
        assert (await client.get("/healthz")).status_code == 200
        response = await anyio.to_thread.run_sync(lambda: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5))
        assert response.status_code == 200
        assert value(response.text, "broker_http_requests_total", route="/healthz", method="GET", status="2xx") == 1
        elsewhere = await anyio.to_thread.run_sync(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=5))
        assert elsewhere.status_code == 404
    assert state.metrics.listener is None
    with pytest.raises(httpx.ConnectError):
        await anyio.to_thread.run_sync(lambda: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2))


@pytest.mark.parametrize("settings", [{"enabled": True, "listen": "127.0.0.1:0", "bearer_token": TOKEN}],
                         indirect=True)
async def test_the_separate_port_wants_the_token_when_one_is_set(app, state) -> None:
    async with app.router.lifespan_context(app):
        url = f"http://127.0.0.1:{state.metrics.listener.port}/metrics"
        refused = await anyio.to_thread.run_sync(lambda: httpx.get(url, timeout=5))
        allowed = await anyio.to_thread.run_sync(lambda: httpx.get(url, headers=AUTH, timeout=5))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer ")
    assert allowed.status_code == 200 and "broker_http_requests_total" in allowed.text
