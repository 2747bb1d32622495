"""Rate limits per client and per source address on ``/token``, ``/revoke``, ``/authorize``, ``/register``
and ``/scim/v2/*`` (``[rate_limits]``; the choice and its limits are in docs/operations.md).

Fixed windows counted in this process, aligned to multiples of the window length so every key
starts afresh together and the counts are simply dropped. Each worker enforces its share of a limit
(the configured number divided by ``server.workers``), so together they allow about the configured
number; with several broker instances each allows that much. A refused request is counted against
no key. Keys: the source address as uvicorn derived it (``server.forwarded_allow_ips`` decides whether
``X-Forwarded-For`` is believed, as everywhere in the broker) and a client key that is never
verified here and used for nothing else: the ``client_id`` of Basic authentication or of the form
(``/token``, ``/revoke``), of the query (``/authorize``), or a digest of the bearer credential (SCIM).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.config import Settings
from broker.web.headers import NO_STORE
from broker.web.templates import templates

Clock = Callable[[], float]
ROUTE_KEY = "broker.route"  # scope key: the route label a refused request is measured under
PATHS = {"/token": "token", "/revoke": "revocation", "/authorize": "authorize", "/register": "registration"}
CLIENT_FORM_GROUPS = ("token", "revocation")  # keyed by the client_id of Basic authentication or of the form
SCIM_PREFIX = "/scim/v2"
MAX_KEY_LENGTH = 256


@dataclass(frozen=True)
class Rule:
    """One endpoint group's limits in this process; 0 means unlimited."""

    window: int
    per_client: int = 0
    per_address: int = 0


class FixedWindows:
    """Requests per key in the current window of ``window`` seconds. Single-threaded (the event loop)."""

    def __init__(self, limit: int, window: int, max_keys: int):
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self.index = -1
        self.counts: dict[str, int] = {}

    def retry_after(self, key: str, now: float) -> float:
        """0 when ``key`` may make another request now, else the seconds until its window ends."""
        index = int(now // self.window)
        if index != self.index:
            self.index, self.counts = index, {}
        if self.counts.get(key, 0) < self.limit:
            return 0.0
        return (index + 1) * self.window - now

    def add(self, key: str) -> None:
        count = self.counts.get(key)
        if count is None and len(self.counts) >= self.max_keys:
            return  # a flood of new keys must not grow memory without bound: past the cap, new keys pass
        self.counts[key] = (count or 0) + 1


class RateLimiter:
    """The limits of every endpoint group, keyed per client and per address."""

    def __init__(self, rules: dict[str, Rule], max_keys: int = 100_000, clock: Clock = time.monotonic):
        self.clock = clock
        self._windows: dict[str, tuple[FixedWindows | None, FixedWindows | None]] = {
            group: (FixedWindows(rule.per_client, rule.window, max_keys) if rule.per_client else None,
                    FixedWindows(rule.per_address, rule.window, max_keys) if rule.per_address else None)
            for group, rule in rules.items() if rule.per_client or rule.per_address}

    def applies(self, group: str) -> bool:
        return group in self._windows

    def hit(self, group: str, address: str, client: str | None) -> tuple[float, str] | None:
        """Count one request; None if it may proceed, else (seconds to wait, "client" or "address")."""
        by_client, by_address = self._windows[group]
        now = self.clock()
        if by_address is not None and (wait := by_address.retry_after(address, now)):
            return wait, "address"
        if by_client is not None and client is not None and (wait := by_client.retry_after(client, now)):
            return wait, "client"
        if by_address is not None:
            by_address.add(address)
        if by_client is not None and client is not None:
            by_client.add(client)
        return None


def limiter_for(settings: Settings, clock: Clock = time.monotonic) -> RateLimiter | None:
    """This worker's limiter: each configured limit divided by the worker count (rounded up)."""
    limits = settings.rate_limits
    if not limits.enabled:
        return None
    workers = settings.server.workers

    def share(limit: int) -> int:
        return math.ceil(limit / workers) if limit else 0

    rules = {group: Rule(section.window, share(getattr(section, "per_client", 0)), share(section.per_address))
             for group, section in (("token", limits.token), ("revocation", limits.revocation),
                                    ("authorize", limits.authorize), ("registration", limits.registration),
                                    ("scim", limits.scim))}
    return RateLimiter(rules, limits.max_keys, clock)


class RateLimit:
    """Pure ASGI middleware: 429 with ``Retry-After`` in the endpoint's own style when a limit is reached."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, refused: Callable[[str, str], None] | None = None):
        self.app = app
        self.limiter = limiter
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        group = _group(scope) if scope["type"] == "http" else None
        if group is None or not self.limiter.applies(group):
            await self.app(scope, receive, send)
            return
        client, receive = await _client_key(group, scope, receive)
        refusal = self.limiter.hit(group, (scope.get("client") or ("unknown",))[0] or "unknown", client)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        wait, kind = refusal
        scope[ROUTE_KEY] = "/scim/v2/*" if group == "scim" else scope["path"]
        if self.refused is not None:
            self.refused(group, kind)
        await _REFUSALS[group](scope, receive, send, max(1, math.ceil(wait)))


def _group(scope: Scope) -> str | None:
    path = scope["path"]
    group = PATHS.get(path)
    if group is None and path.startswith(SCIM_PREFIX) and path[len(SCIM_PREFIX):len(SCIM_PREFIX) + 1] in ("", "/"):
        return "scim"
    return group


# ---------------------------------------------------------------- keys (unverified, only ever dict keys)

async def _client_key(group: str, scope: Scope, receive: Receive) -> tuple[str | None, Receive]:
    if group == "authorize":
        return _param(scope.get("query_string", b""), b"client_id"), receive
    if group == "scim":
        credential = _header(scope, b"authorization")
        return (hashlib.sha256(credential).hexdigest()[:32] if credential else None), receive
    if group not in CLIENT_FORM_GROUPS:
        return None, receive
    basic = basic_client_id(_header(scope, b"authorization"))
    if basic is not None or scope["method"] != "POST" or not _is_form(scope):
        return basic, receive
    body, receive = await _buffer(receive)
    return _param(body, b"client_id"), receive


def _header(scope: Scope, name: bytes) -> bytes | None:
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())
    for key, value in headers:
        if key == name:
            return value
    return None


def _is_form(scope: Scope) -> bool:
    content_type = _header(scope, b"content-type") or b""
    return content_type.split(b";", 1)[0].strip().lower() == b"application/x-www-form-urlencoded"


def basic_client_id(header: bytes | None) -> str | None:
    """The client_id part of ``Basic base64(client_id:secret)`` (RFC 6749 §2.3.1); the secret is dropped."""
    if not header or header[:6].lower() != b"basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id = unquote_plus(decoded.partition(":")[0])
    return client_id[:MAX_KEY_LENGTH] or None


def _param(encoded: bytes, name: bytes) -> str | None:
    """The first ``name=value`` of a urlencoded string, found without parsing the rest (the hot path)."""
    key = name + b"="
    if encoded.startswith(key):
        start = len(key)
    else:
        start = encoded.find(b"&" + key)
        if start < 0:
            return None
        start += len(key) + 1
    end = encoded.find(b"&", start)
    raw = encoded[start:end if end >= 0 else len(encoded)][:3 * MAX_KEY_LENGTH]
    try:
        value = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    if b"%" in raw or b"+" in raw:
        value = unquote_plus(value, errors="replace")
    return value[:MAX_KEY_LENGTH] or None


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole body (``BodySizeLimit`` outside caps it) and a ``receive`` that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", _replay([message], receive)  # the client went away: let the app see it
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed


# ---------------------------------------------------------------- refusals, each in its endpoint's style

def _message(wait: int) -> str:
    return f"too many requests; retry after {wait} seconds"


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _oauth_json(error: str, send: Send, wait: int) -> None:
    body = json.dumps({"error": error, "error_description": _message(wait)}).encode()
    await _send(send, 429, body, [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                                  (b"pragma", b"no-cache"), (b"retry-after", str(wait).encode())])


async def _refuse_token(scope: Scope, receive: Receive, send: Send, wait: int) -> None:
    # RFC 6749 has no rate-limit error; temporarily_unavailable ("temporary overloading") is the one
    # clients treat as retryable, and what /token already answers when the IdP is unreachable.
    await _oauth_json("temporarily_unavailable", send, wait)


async def _refuse_register(scope: Scope, receive: Receive, send: Send, wait: int) -> None:
    await _oauth_json("too_many_requests", send, wait)  # as registration.max_per_hour_per_address answers


async def _refuse_authorize(scope: Scope, receive: Receive, send: Send, wait: int) -> None:
    # A page, never a redirect: nothing about the client or its redirect URI has been validated yet.
    response = templates.TemplateResponse(Request(scope), "pages/error.html", {
        "title": "Too many requests", "detail": f"Too many sign-in attempts; try again in {wait} seconds."},
        status_code=429, headers={**NO_STORE, "retry-after": str(wait)})
    await response(scope, receive, send)


async def _refuse_scim(scope: Scope, receive: Receive, send: Send, wait: int) -> None:
    body = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "429",
                       "detail": _message(wait)}).encode()
    await _send(send, 429, body, [(b"content-type", b"application/scim+json"), (b"cache-control", b"no-store"),
                                  (b"retry-after", str(wait).encode())])


_REFUSALS = {"token": _refuse_token, "revocation": _refuse_token, "registration": _refuse_register,
             "authorize": _refuse_authorize, "scim": _refuse_scim}
