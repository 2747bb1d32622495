"""The shared client for server-to-server calls (``broker.federation.http.upstream_client``)."""

from __future__ import annotations

import httpx

from broker.federation.http import UpstreamHttp, upstream_client

TOKEN_URL = "https://idp.example/oauth2/token"


def _recording(seen: list[httpx.Request], response: httpx.Response) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response
    return httpx.MockTransport(handle)


async def test_a_cookie_set_on_one_users_exchange_is_never_sent_on_the_next() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(200, json={"access_token": "a"},
                            headers={"set-cookie": "idp_session=alice; Path=/; Domain=idp.example"})
    async with upstream_client(transport=_recording(seen, answer)) as client:
        upstream = UpstreamHttp(client, "okta")
        for code in ("alice-code", "bob-code"):
            response = await upstream.post_form(TOKEN_URL, data={"code": code}, headers={}, what="token endpoint",
                                                timeout=5)
            assert response.status_code == 200
        assert len(client.cookies.jar) == 0
    assert [request.headers.get("cookie") for request in seen] == [None, None]


async def test_a_redirect_is_returned_not_followed() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(302, headers={"location": "https://elsewhere.example/steal"})
    async with upstream_client(transport=_recording(seen, answer)) as client:
        response = await UpstreamHttp(client, "okta").post_form(TOKEN_URL, data={}, headers={}, what="token endpoint",
                                                                timeout=5)
    assert response.status_code == 302
    assert [str(request.url) for request in seen] == [TOKEN_URL]
