"""``GET /metrics`` on the main port, and the middleware that measures every request.

The route is always present (and in the OpenAPI document) but answers 404 unless ``metrics.enabled``
and ``metrics.bearer_token`` are both set; then it wants ``Authorization: Bearer <token>`` (401
otherwise). The separate port (``metrics.listen``) is served by ``broker.observability``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.observability import Metrics, bearer_matches
from broker.observability.listener import CHALLENGE
from broker.web.deps import State
from broker.web.headers import NO_STORE
from broker.web.ratelimit import ROUTE_KEY

router = APIRouter(tags=["operations"])
UNROUTED = "unrouted"  # unknown paths, and requests refused before routing (413): never the raw path
_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


@router.get("/metrics", summary="Prometheus metrics (when metrics.enabled and metrics.bearer_token are set)",
            response_class=Response, responses={
                200: {"description": "Prometheus text exposition format 0.0.4",
                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                401: {"description": "Missing or wrong bearer token (WWW-Authenticate: Bearer)"},
                404: {"description": "Metrics are not served on this port (metrics.enabled is false or "
                                     "metrics.bearer_token is unset)"}})
async def metrics(request: Request, state: State) -> Response:
    exposed: Metrics | None = state.metrics
    token = exposed.token() if exposed is not None else None
    if exposed is None or token is None:
        return JSONResponse({"error": "not_found", "error_description": "Not Found"}, 404, headers=NO_STORE)
    if not bearer_matches(request.headers.get("authorization"), token):
        return JSONResponse({"error": "invalid_token", "error_description": "a bearer token is required"}, 401,
                            headers={**NO_STORE, "www-authenticate": CHALLENGE})
    body, content_type = await run_in_threadpool(exposed.render)  # multi-worker mode reads files
    return Response(body, media_type=content_type, headers=NO_STORE)


class RequestMetrics:
    """Pure ASGI middleware: count and time every HTTP request by route template, method and status class."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(_route(scope), scope["method"], status, time.perf_counter() - started)


def _route(scope: Scope) -> str:
    """The matched route's template with its router's prefix (``/testidp/token``, ``/callback/{idp_id}``);
    a mount as ``/static/*``; never the raw path of an unmatched request."""
    route: Any = scope.get("route")
    if route is None:
        return scope.get(ROUTE_KEY) or UNROUTED
    template = getattr(route, "path", "")
    if isinstance(route, Mount):
        return f"{template}/*"
    # FastAPI keeps an included router's routes unprefixed: the prefix is what precedes the matched part.
    params = scope.get("path_params") or {}
    rendered = _PARAM.sub(lambda m: str(params.get(m[1], "")), template) if "{" in template else template
    path = scope["path"]
    return path[:len(path) - len(rendered)] + template if path.endswith(rendered) else template or "/"
