"""The token side's HTTP, without a framework: requests as plain values in, replies as bytes out.

``Front`` is an ASGI application for a fixed set of paths; ``broker.web.create_app`` puts it in front of
FastAPI, which serves every other path. For its paths it does what the FastAPI stack does for the others
(the request id and access line, security headers, the body cap, public CORS, rate limits, metrics) in
one pass with prebuilt headers, and turns an unavailable database into a 503.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa

from broker.logs import request_id
from broker.observability import Metrics
from broker.storage.db import DatabaseError, first_line
from broker.web.cors import ALLOW_HEADERS
from broker.web.metrics import UNROUTED
from broker.web.middleware import SECURITY_HEADERS
from broker.web.ratelimit import RateLimiter, basic_client_id
from broker.web.ratelimit import _param as form_value  # the limiter's own key reader: one rule for both

log = logging.getLogger("broker.web")
access_log = logging.getLogger("broker.access")

Header = tuple[bytes, bytes]
JSON_TYPE = (b"content-type", b"application/json")
NO_STORE: tuple[Header, ...] = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
PUBLIC_ORIGIN = (b"access-control-allow-origin", b"*")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


@dataclass(slots=True)
class Request:
    """One request as plain values. ``headers``: lower-case names; a repeated header keeps its last value."""

    method: str
    path: str
    headers: dict[str, str]
    query: bytes
    body: bytes
    client_ip: str | None
    dpop: tuple[str, ...] = ()  # every DPoP header, in order: a proof must come alone (RFC 9449 §4.3)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: list[Header]


def json_reply(status: int, content: Any, headers: tuple[Header, ...] | list[Header] = NO_STORE) -> Reply:
    """JSON as Starlette's ``JSONResponse`` writes it (UTF-8, no spaces)."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return Reply(status, body, [JSON_TYPE, *headers])


def error_reply(status: int, error: str, description: str | None, headers: tuple[Header, ...] = ()) -> Reply:
    content = {"error": error} if description is None else {"error": error, "error_description": description}
    return json_reply(status, content, (*NO_STORE, *headers))


Handler = Callable[[Request], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """A path the front serves: its methods, its handler, whether any origin may call it (CORS), and its
    rate-limit group (``broker.web.ratelimit``), if any."""

    path: str
    methods: frozenset[str]
    handler: Handler
    cors: bool = False
    limit: str | None = None


class Front:
    """The ASGI application for ``routes``; ``serves(path)`` tells the app in front of FastAPI to call it."""

    def __init__(self, routes: list[Route], max_body_bytes: int, limiter: RateLimiter | None,
                 metrics: Metrics | None) -> None:
        self.routes = {route.path: route for route in routes}
        self.max_body_bytes = max_body_bytes
        self.limiter = limiter
        self.metrics = metrics

    def serves(self, path: str) -> bool:
        return path in self.routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = self.routes[scope["path"]]
        started, status, label = time.perf_counter(), 500, route.path
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        rid = headers.get("x-request-id")
        rid = rid if rid is not None and _SAFE_REQUEST_ID.match(rid) else secrets.token_hex(8)
        context = request_id.set(rid)
        try:
            reply = await self._reply(route, scope, receive, headers)
            if reply is not None:
                status = reply.status
                label = UNROUTED if status == 413 else route.path  # refused before routing, as the stack does
                await _send(send, reply, rid, route.cors and status != 413)
        finally:
            seconds = time.perf_counter() - started
            access_log.info("%s %s", scope["method"], scope["path"], extra={
                "status": status, "duration_ms": round(seconds * 1000, 2),
                "client_ip": (scope.get("client") or ("", 0))[0]})
            if self.metrics is not None:
                self.metrics.observe_request(label, scope["method"], status, seconds)
            request_id.reset(context)

    async def _reply(self, route: Route, scope: dict[str, Any], receive: Any, headers: dict[str, str]) -> Reply | None:
        """The reply, in the order of the FastAPI stack's layers: body cap, CORS preflight, rate limit, method."""
        method = scope["method"]
        if _declared_length(headers) > self.max_body_bytes:
            return _TOO_LARGE
        if method == "OPTIONS" and route.cors:
            return _PREFLIGHT
        body = await _read(receive, self.max_body_bytes) if method == "POST" else b""
        if body is None:
            return None  # the client went away
        if body is _TOO_LONG:
            return _TOO_LARGE
        if route.limit is not None and self.limiter is not None and self.limiter.applies(route.limit):
            refused = self._limited(route.limit, scope, headers, body)
            if refused is not None:
                return refused
        allowed = route.methods | ({"HEAD"} if "GET" in route.methods else set())
        if method not in allowed:
            return json_reply(405, {"error": "method_not_allowed", "error_description": "Method Not Allowed"},
                              ((b"cache-control", b"no-store"), (b"allow", ", ".join(sorted(allowed)).encode())))
        client = scope.get("client")
        request = Request(method, scope["path"], headers, scope.get("query_string", b""), body,
                          client[0] if client else None, _every(scope, b"dpop") if "dpop" in headers else ())
        return await _handled(route.handler, request)

    def _limited(self, group: str, scope: dict[str, Any], headers: dict[str, str], body: bytes) -> Reply | None:
        assert self.limiter is not None
        authorization = headers.get("authorization")
        client = basic_client_id(authorization.encode("latin-1") if authorization is not None else None)
        if client is None and _is_form(headers):
            client = form_value(body, b"client_id")
        refusal = self.limiter.hit(group, (scope.get("client") or ("unknown",))[0] or "unknown", client)
        if refusal is None:
            return None
        wait, kind = refusal
        if self.metrics is not None:
            self.metrics.count_rate_limited(group, kind)
        seconds = max(1, math.ceil(wait))
        # RFC 6749 has no rate-limit error: temporarily_unavailable is the one clients retry (as at the IdP's)
        return error_reply(429, "temporarily_unavailable", f"too many requests; retry after {seconds} seconds",
                           ((b"retry-after", str(seconds).encode()),))


async def _handled(handler: Handler, request: Request) -> Reply:
    """The handler's reply; an unavailable database is a 503 (the client retries), anything else a 500."""
    try:
        return await handler(request)
    except DatabaseError as exc:
        log.error("database unavailable: %s", exc)
    except (sa.OperationalError, sa.InterfaceError, sa.TimeoutError) as exc:
        log.error("database unavailable on %s %s: %s: %s", request.method, request.path,
                  type(getattr(exc, "orig", None) or exc).__name__, first_line(exc))
    except Exception as exc:  # noqa: BLE001 - one line and a 500, as FastAPI's handler answers
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return json_reply(500, {"error": "server_error"}, ((b"cache-control", b"no-store"),))
    return json_reply(503, {"error": "temporarily_unavailable", "error_description": "database unavailable"},
                      ((b"cache-control", b"no-store"), (b"retry-after", b"1")))


_TOO_LONG = b"\0too long"  # a sentinel: the body outgrew the cap while it was read
_TOO_LARGE = Reply(413, b'{"error":"invalid_request","error_description":"request body too large"}',
                   [JSON_TYPE, (b"cache-control", b"no-store")])
_PREFLIGHT = Reply(204, b"", [PUBLIC_ORIGIN, (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                              (b"access-control-allow-headers", ALLOW_HEADERS), (b"access-control-max-age", b"86400")])


async def _read(receive: Any, limit: int) -> bytes | None:
    """The whole body; ``_TOO_LONG`` past ``limit`` bytes; None when the client disconnected."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else _TOO_LONG
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _TOO_LONG
        chunks.append(chunk)
    return b"".join(chunks)


def _every(scope: dict[str, Any], name: bytes) -> tuple[str, ...]:
    return tuple(value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name)


def _declared_length(headers: dict[str, str]) -> int:
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0


def _is_form(headers: dict[str, str]) -> bool:
    content_type = headers.get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded"


async def _send(send: Any, reply: Reply, rid: str, cors: bool) -> None:
    headers = [(b"content-length", str(len(reply.body)).encode()), *reply.headers]
    if cors:
        headers = [header for header in headers if header[0] != PUBLIC_ORIGIN[0]]
        headers.append(PUBLIC_ORIGIN)
    present = {name for name, _ in headers} & _SECURITY_NAMES
    headers += [header for header in SECURITY_HEADERS if header[0] not in present]
    headers.append((b"x-request-id", rid.encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
