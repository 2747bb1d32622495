"""The token engine's HTTP side: the hot endpoints on a framework-free ASGI application (``Front``), in front of
FastAPI in the same process (``BrokerApp``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute

from broker.web.engine.discovery import Discovery
from broker.web.engine.http import Front, Route
from broker.web.engine.openapi import documented
from broker.web.engine.tokens import TokenSide
from broker.web.ratelimit import RateLimiter
from broker.web.state import BrokerState

__all__ = ["BrokerApp", "mount_front"]

GET, POST = frozenset({"GET"}), frozenset({"POST"})


class BrokerApp(FastAPI):
    """FastAPI, with the token side's paths answered by ``front`` before FastAPI sees them."""

    front: Front | None = None
    documented: list[BaseRoute] = []  # the front's paths, for the OpenAPI document (``engine.openapi``)
    outermost: Any = None  # instrumentation around everything, the front included (``wrap``)

    def wrap(self, middleware: Callable[[Any], Any]) -> None:
        """Put ``middleware`` (an ASGI app factory) around the front and FastAPI alike: tracing."""
        self.outermost = middleware(self.dispatch)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.outermost is not None:
            await self.outermost(scope, receive, send)
            return
        await self.dispatch(scope, receive, send)

    max_header_bytes: int | None = None  # larger request heads get 431 (``server.max_header_bytes``)

    async def dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        if self.max_header_bytes is not None and scope["type"] == "http" \
                and header_bytes(scope) > self.max_header_bytes:
            await headers_too_large(send)
            return
        front = self.front
        if front is not None and scope["type"] == "http" and front.serves(scope["path"]):
            await front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            self.openapi_schema = get_openapi(
                title=self.title, version=self.version, openapi_version=self.openapi_version,
                description=self.description, routes=[*self.documented, *self.routes], tags=self.openapi_tags,
                servers=self.servers, separate_input_output_schemas=self.separate_input_output_schemas)
        return self.openapi_schema


def header_bytes(scope: Any) -> int:
    """The size of a request's line and headers, about as it came (RFC 6585 §5)."""
    return len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + sum(
        len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


async def headers_too_large(send: Any) -> None:
    body = b'{"error":"invalid_request","error_description":"request headers too large"}'
    await send({"type": "http.response.start", "status": 431,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def mount_front(app: BrokerApp, state: BrokerState, discovery_paths: list[str], limiter: RateLimiter | None) -> None:
    """Serve the token side's paths from the front, and list them in the OpenAPI document."""
    app.front = front_for(state, discovery_paths, limiter)
    app.max_header_bytes = state.settings.server.max_header_bytes
    app.documented = list(documented(discovery_paths).routes)


def front_for(state: BrokerState, discovery_paths: list[str], limiter: RateLimiter | None) -> Front:
    discovery, tokens = Discovery(state), TokenSide(state)
    routes = [Route("/token", POST, tokens.token, cors=True, limit="token"),
              Route("/introspect", POST, tokens.introspect),
              Route("/revoke", POST, tokens.revoke, cors=True, limit="revocation"),
              Route("/revocations", GET, tokens.revocations),
              Route("/jwks", GET, discovery.jwks, cors=True),
              *(Route(path, GET, discovery.metadata, cors=True) for path in discovery_paths)]
    return Front(routes, state.settings.server.max_body_bytes, limiter, state.metrics)
