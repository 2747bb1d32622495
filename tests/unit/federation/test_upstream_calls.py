"""broker.federation.calls: every upstream call is reported once, with a bounded endpoint and its outcome."""

from __future__ import annotations

import httpx
import pytest

from broker.federation import calls
from broker.federation.errors import UpstreamUnavailable
from broker.federation.http import UpstreamHttp
from broker.federation.jwks import http_fetcher


@pytest.fixture
def seen() -> list[calls.UpstreamCall]:
    found: list[calls.UpstreamCall] = []
    stop = calls.observe(found.append)
    yield found
    stop()


@pytest.mark.parametrize("what,endpoint", [
    ("token endpoint", "token"), ("token endpoint (refresh)", "token"), ("discovery document", "discovery"),
    ("JWKS", "jwks"), ("Graph token request", "graph"), ("Graph group lookup", "graph"),
    ("userinfo endpoint", "userinfo"), ("revocation endpoint", "revocation"), ("something new", "other"),
])
def test_endpoint_names_are_bounded(what: str, endpoint: str) -> None:
    assert calls.endpoint_of(what) == endpoint and endpoint in calls.ENDPOINTS


def client(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_an_idp_call_is_reported_with_its_status_class(seen) -> None:
    http = UpstreamHttp(client(lambda request: httpx.Response(400, json={"error": "invalid_grant"})), "okta")
    response = await http.post_form("https://idp.example/token", data={}, headers={}, what="token endpoint",
                                    timeout=5)
    assert response.status_code == 400
    assert [(c.peer_kind, c.peer, c.endpoint, c.outcome) for c in seen] == [("idp", "okta", "token", "4xx")]
    assert seen[0].seconds >= 0


async def test_an_unreachable_idp_is_reported_as_such(seen) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(UpstreamUnavailable):
        await UpstreamHttp(client(refuse), "okta").get_json("https://idp.example/jwks", what="JWKS", timeout=5)
    assert [(c.endpoint, c.outcome) for c in seen] == [("jwks", "unreachable")]


async def test_jwks_of_issuers_and_senders_are_reported_by_kind(seen) -> None:
    fetch = http_fetcher(client(lambda request: httpx.Response(200, json={"keys": []})), "https://x/jwks", "acme",
                         "signal_sender")
    assert await fetch() == {"keys": []}
    assert [(c.peer_kind, c.peer, c.endpoint, c.outcome) for c in seen] == [("signal_sender", "acme", "jwks", "2xx")]


async def test_a_failing_observer_never_fails_the_call(seen) -> None:
    def broken(call: calls.UpstreamCall) -> None:
        raise RuntimeError("observer bug")

    stop = calls.observe(broken)
    try:
        fetch = http_fetcher(client(lambda request: httpx.Response(200, json={"keys": []})), "https://x/jwks", "a")
        assert await fetch() == {"keys": []}
    finally:
        stop()
    assert len(seen) == 1


def test_a_refused_client_metadata_document_is_reported(seen) -> None:
    from broker.oauth.ssrf import FetchError, HttpsMetadataFetcher

    fetcher = HttpsMetadataFetcher(max_bytes=5120, timeout=1, resolver=lambda host, port: ["10.0.0.1"])
    with pytest.raises(FetchError):
        fetcher.fetch("https://client.example/metadata.json")  # a private address: never fetched
    assert [(c.peer_kind, c.peer, c.endpoint, c.outcome) for c in seen] == [("cimd", "cimd", "document", "refused")]
