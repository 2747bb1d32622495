"""HTTP to an upstream IdP: a total timeout, a size cap, no redirects, and every failure an UpstreamError.

Log lines name the IdP, the endpoint and an exception class or status, never a URL with a query,
a body or a header.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from broker.federation import calls
from broker.federation.errors import UpstreamUnavailable

MAX_RESPONSE_BYTES = 1 << 20  # discovery documents, JWKS and token responses are a few KB
ACCEPT_JSON = {"accept": "application/json"}

log = logging.getLogger("broker.federation")

# Idle connections kept per client (httpx's default is 20): httpcore checks every pooled connection on each
# request, so fewer idle ones cost less per call; busier bursts open extra connections and close them after
# use (docs/decisions/0012-a-bounded-upstream-connection-pool.md).
KEEPALIVE_CONNECTIONS = 8


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Server-to-server requests carry no cookies: one client serves every user, so a cookie an IdP
    (or a load balancer in front of it) set on one user's exchange must not ride along on the next."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def upstream_client(timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The shared client for calls to IdPs, ID-JAG issuers and signal transmitters: no redirects, no
    cookies, a bounded idle pool. ``transport``: tests' stand-in for the network."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False, transport=transport,
                             cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
                             limits=httpx.Limits(max_keepalive_connections=KEEPALIVE_CONNECTIONS))


@dataclass(frozen=True)
class UpstreamResponse:
    """Status and parsed JSON body (``None`` when the body is not JSON)."""

    status_code: int
    body: Any = None


class UpstreamHttp:
    """The requests one connector makes, on a shared ``httpx.AsyncClient``.

    ``explain`` (optional) reads an IdP's own error body (Okta's ``errorCode``) into a short phrase
    of ours that failure descriptions add; it must never return the IdP's text.
    """

    def __init__(self, http: httpx.AsyncClient, idp_id: str,
                 explain: Callable[[UpstreamResponse], str | None] | None = None):
        self._http = http
        self._idp_id = idp_id
        self._explain = explain

    async def get_json(self, url: str, *, what: str, timeout: float, headers: Mapping[str, str] | None = None) -> Any:
        """GET a JSON document; anything but 200 with JSON is ``UpstreamUnavailable``."""
        response = await self.request("GET", url, what=what, timeout=timeout,
                                      headers={**ACCEPT_JSON, **(headers or {})})
        if response.status_code != 200:
            detail = self._explain(response) if self._explain else None
            self._warn(what, status=response.status_code, detail=detail)
            raise UpstreamUnavailable(f"the identity provider's {what} answered HTTP {response.status_code}"
                                      + (f" ({detail})" if detail else ""))
        if response.body is None:
            self._warn(what, status=response.status_code, problem="not JSON")
            raise UpstreamUnavailable(f"the identity provider's {what} is not JSON")
        return response.body

    async def post_form(self, url: str, *, data: Mapping[str, str], headers: Mapping[str, str], what: str,
                        timeout: float) -> UpstreamResponse:
        """POST a form; the caller judges the status. Only transport failures raise here."""
        return await self.request("POST", url, what=what, timeout=timeout, data=dict(data),
                                  headers={**ACCEPT_JSON, **headers})

    async def request(self, method: str, url: str, *, what: str, timeout: float, **kwargs: Any) -> UpstreamResponse:
        with calls.timed("idp", self._idp_id, calls.endpoint_of(what)) as outcome:
            try:
                async with asyncio.timeout(timeout):  # httpx timeouts are per phase; this bounds the whole exchange
                    async with self._http.stream(method, url, timeout=timeout, follow_redirects=False,
                                                 **kwargs) as response:
                        outcome.status(response.status_code)
                        raw = await _read_capped(response)
            except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
                outcome.value = "timeout" if isinstance(exc, TimeoutError | httpx.TimeoutException) else "unreachable"
                self._warn(what, problem=type(exc).__name__)
                raise UpstreamUnavailable(f"the identity provider's {what} could not be reached") from None
            except _TooLarge:
                outcome.value = "too_large"
                self._warn(what, problem="response too large")
                raise UpstreamUnavailable(f"the identity provider's {what} sent too large a response") from None
        return UpstreamResponse(response.status_code, parse_json(raw))

    def _warn(self, what: str, **details: Any) -> None:
        log.warning("upstream %s failed", what, extra={"idp": self._idp_id, **details})


class _TooLarge(Exception):
    pass


async def _read_capped(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():  # decoded bytes, so a compressed bomb is capped too
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw``; ``None`` when it is not strict JSON (NaN and Infinity refused)."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # RFC 8259 §6: NaN and Infinity are not permitted
