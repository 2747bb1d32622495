"""A protected MCP server that trusts the broker: the demo MCP server of ``broker dev``.

It is a real MCP server built with the MCP Python SDK (``MCPServer``, streamable HTTP). Every
request to its endpoint must carry a broker access token whose ``aud`` is this server's resource
URI; ``broker.resource.BrokerTokenVerifier`` checks it against the broker's JWKS. It publishes its
Protected Resource Metadata (RFC 9728) so MCP clients find the broker on their own, and has one
tool, ``whoami``, which says who called. It takes bearer tokens (``Authorization: Bearer``) and
DPoP-bound tokens (``Authorization: DPoP`` with a ``DPoP`` proof, RFC 9449) through
``broker.resource.DpopAuthMiddleware``; ``--require-dpop`` refuses bearer tokens.

Scopes: ``tools:read`` for any request (connect, list tools), ``tools:call`` to call a tool.

Run it on its own, next to a running ``broker dev`` (which listens on 127.0.0.1:8000)::

    python examples/protected_server.py --issuer http://127.0.0.1:8000 --port 9000
    # resource URI (default): http://127.0.0.1:9000/demo/mcp -- register it at the broker first
    # (and allow it in policy, as the dev policy allows `demo` to group engineering):
    broker servers add --id demo9000 --name "Demo on 9000" --resource http://127.0.0.1:9000/demo/mcp \\
        --scopes "tools:read tools:call"

How ``broker dev`` uses it: the broker serves the demo in its own process, on its own origin, at
``<issuer>/demo/mcp`` (resource URI ``<issuer>/demo/mcp``, server id ``demo``)::

    demo = create_app(issuer, f"{issuer}/demo/mcp")       # a Starlette app with its own lifespan
    app.mount("/", demo)                                    # last, after all the broker's routes
    # Starlette does not run a mounted app's lifespan: the broker's lifespan must enter it,
    #     async with demo.router.lifespan_context(demo): yield
    # which starts the SDK's session manager (and closes the verifier's HTTP client at the end).

The demo app answers exactly two paths, ``/demo/mcp`` and
``/.well-known/oauth-protected-resource/demo/mcp``, and 404 for everything else, so mounting it at
``/`` after the broker's routes shadows nothing (they are also in ``demo.state.paths``, for a host
that would rather dispatch those two paths to it). The lifespan can run once per ``create_app``
call (the SDK's session manager is single-use): build a new demo for each broker app. Its
verifier fetches ``<issuer>/jwks`` over HTTP, i.e. from the broker itself; pass
``verifier=BrokerTokenVerifier(issuer, resource, http=...)`` to route that fetch elsewhere (an
``httpx.ASGITransport`` to the broker app, or in tests an ``httpx.MockTransport``).

What the SDK does and what this file adds (see docs/mcp-servers.md):

- the SDK (``AuthSettings`` + ``token_verifier``) authenticates every request with the verifier,
  re-checks the token's resource (``validate_token_resource``), requires ``tools:read``, exposes the
  token to tools (``get_access_token``) and binds MCP sessions to the token's principal;
- ``BrokerChallenges`` answers 401/403 with the challenges MCP clients act on (the SDK's carry no
  ``scope``, and send ``error="invalid_token"`` even when no token was sent), and turns a
  ``tools/call`` without the tool's scope into a 403 ``insufficient_scope`` step-up challenge;
- the metadata document lists every scope the server understands (the SDK's lists only the
  required ones, so clients would never ask for ``tools:call``), and the DPoP proof algorithms;
- ``DpopAuthMiddleware``, outermost, verifies ``Authorization: DPoP`` requests (the SDK reads only
  ``Bearer``) and adds ``DPoP`` challenges to the answers.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.routes import cors_middleware
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.resource import (
    BrokerTokenVerifier,
    DpopAuthMiddleware,
    RevocationFeed,
    current_access_token,
    metadata_path,
    metadata_url,
    protected_resource_metadata,
    www_authenticate,
)

DEFAULT_PATH = "/demo/mcp"
SCOPES = ("tools:read", "tools:call")  # everything this server understands, in PRM and 401 challenges
REQUIRED_SCOPES = ("tools:read",)  # every request to the MCP endpoint
TOOL_SCOPES: dict[str, tuple[str, ...]] = {"whoami": ("tools:call",)}  # calling these tools, in addition
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Caller(BaseModel):
    """Who called, as the broker vouches for it."""

    sub: str | None
    email: str | None
    client_id: str
    scopes: list[str]


def whoami() -> Caller:
    """Who is calling: the user (or client) the broker issued the token to, and the token's scopes."""
    token = current_access_token()
    if token is None:
        raise ToolError("not authenticated")
    # Defence in depth: BrokerChallenges already answered 403 to a tools/call without this scope.
    if not set(TOOL_SCOPES["whoami"]) <= set(token.scopes):
        raise ToolError("insufficient_scope: calling whoami needs scope tools:call")
    return Caller(sub=token.subject, email=token.email, client_id=token.client_id, scopes=token.scopes)


def build_server(verifier: TokenVerifier, issuer: str, resource: str) -> MCPServer:
    """The MCP server with the SDK's resource-server auth settings pointed at the broker."""
    auth = AuthSettings(
        issuer_url=issuer,  # pydantic validates the strings
        resource_server_url=resource,
        required_scopes=list(REQUIRED_SCOPES),
        validate_token_resource=True,  # the SDK re-checks AccessToken.resource; the verifier checked aud
    )
    server = MCPServer("broker-demo", title="Broker demo MCP server", version="0.1.0", token_verifier=verifier,
                       auth=auth, instructions="A demo server protected by mcp-auth-broker. Call whoami.")
    server.add_tool(whoami, title="Who am I?")
    return server


def create_app(issuer: str, resource: str, path: str = DEFAULT_PATH, *, verifier: TokenVerifier | None = None,
               resource_name: str = "Broker demo MCP server", revocations: RevocationFeed | None = None,
               require_dpop: bool = False) -> Starlette:
    """The demo as a Starlette app (MCP endpoint at ``path`` + its metadata) with its own lifespan.

    ``resource`` is the canonical resource URI the broker puts in ``aud``; its path must be ``path``.
    With ``revocations``, the lifespan follows the broker's revocation feed and the verifier refuses
    what it lists (a revoked user's calls fail within seconds instead of at token expiry).
    ``require_dpop`` makes the verifier it builds refuse bearer tokens (a given ``verifier`` has its own).
    """
    if (urlsplit(resource).path or "/") != path:
        raise ValueError(f"the resource URI's path must be the endpoint path {path!r}: {resource!r}")
    own_verifier = None
    if verifier is None:
        verifier = own_verifier = BrokerTokenVerifier(
            issuer, resource, is_revoked=revocations.is_revoked if revocations else None, require_dpop=require_dpop)
    server = build_server(verifier, issuer, resource)
    sdk_app = server.streamable_http_app(streamable_http_path=path, transport_security=transport_security(resource))
    dpop = verifier if isinstance(verifier, BrokerTokenVerifier) else None
    document = protected_resource_metadata(
        resource, issuer, SCOPES, resource_name=resource_name,
        dpop_algorithms=dpop.dpop_algorithms if dpop else None, dpop_required=bool(dpop and dpop.require_dpop))

    async def resource_metadata(request: Request) -> Response:
        return JSONResponse(document, headers={"cache-control": "public, max-age=3600"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run(), anyio.create_task_group() as feed:
            if revocations is not None:
                feed.start_soon(revocations.run)
            try:
                yield
            finally:
                feed.cancel_scope.cancel()
                if own_verifier is not None:
                    await own_verifier.aclose()
                if revocations is not None:
                    await revocations.aclose()

    prm_path = metadata_path(resource)
    routes: list[BaseRoute] = [
        # Ours replaces the SDK's document at the same path (see the module docstring).
        Route(prm_path, cors_middleware(resource_metadata, ["GET", "OPTIONS"]), methods=["GET", "OPTIONS"]),
        *(r for r in sdk_app.routes if getattr(r, "path", None) != prm_path),
    ]
    challenges = Middleware(BrokerChallenges, path=path, resource_metadata_url=metadata_url(resource),
                            scopes=SCOPES, required_scopes=REQUIRED_SCOPES, tool_scopes=TOOL_SCOPES)
    # DPoP outermost (it hands the SDK a verified token), then the SDK's middleware (bearer authentication,
    # auth context), then ours, which sees scope["user"].
    dpop_middleware = [Middleware(DpopAuthMiddleware, verifier=dpop, resource_metadata_url=metadata_url(resource))
                       ] if dpop else []
    app = Starlette(routes=routes, middleware=[*dpop_middleware, *sdk_app.user_middleware, challenges],
                    lifespan=lifespan)
    app.state.paths = (path, prm_path)  # all it serves, for a host that routes by path instead of mounting
    return app


def transport_security(resource: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection for the resource's own host (None: the SDK's loopback defaults)."""
    parts = urlsplit(resource)
    if parts.hostname in LOOPBACK:
        return None
    return TransportSecuritySettings(allowed_hosts=[parts.netloc], allowed_origins=[f"{parts.scheme}://{parts.netloc}"])


class BrokerChallenges:
    """ASGI middleware in front of the MCP endpoint, after the SDK's bearer authentication.

    - no valid token: 401, ``WWW-Authenticate: Bearer resource_metadata=..., scope=<all scopes>``
      (``error="invalid_token"`` only when a token was sent, RFC 6750 §3.1);
    - token without the required scopes: 403 ``insufficient_scope``;
    - a ``tools/call`` of a tool whose scope the token lacks: 403 ``insufficient_scope`` naming every
      scope that call needs, which the SDK's client answers with a step-up authorization.

    The SDK's own ``RequireAuthMiddleware`` stays behind this one as a second line.
    """

    def __init__(self, app: ASGIApp, *, path: str, resource_metadata_url: str, scopes: Sequence[str],
                 required_scopes: Sequence[str], tool_scopes: Mapping[str, Sequence[str]],
                 max_body_size: int = DEFAULT_MAX_REQUEST_BODY_SIZE):
        self.app = app
        self.path = path
        self.resource_metadata_url = resource_metadata_url
        self.scopes = tuple(scopes)
        self.required = frozenset(required_scopes)
        self.tool_scopes = {name: frozenset(s) for name, s in tool_scopes.items()}
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        user = scope.get("user")
        if not isinstance(user, AuthenticatedUser):
            error = "invalid_token" if _bearer_sent(scope) else None
            await self._challenge(scope, send, 401, error, self.scopes, "a valid broker access token is required")
            return
        held = frozenset(user.scopes)
        if not self.required <= held:
            await self._challenge(scope, send, 403, "insufficient_scope", self._ordered(self.required),
                                  "missing scope")
            return
        if scope["method"] == "POST" and any(not s <= held for s in self.tool_scopes.values()):
            messages, body = await _buffer(receive, self.max_body_size)
            needed = self._tool_call_scopes(body)
            if not needed <= held:
                await self._challenge(scope, send, 403, "insufficient_scope", self._ordered(self.required | needed),
                                      "calling this tool needs more scope")
                return
            receive = _replay(messages, receive)
        await self.app(scope, receive, send)

    def _tool_call_scopes(self, body: bytes | None) -> frozenset[str]:
        """The scopes the tools/call requests in ``body`` need (none if it is not readable JSON-RPC)."""
        try:
            parsed = json.loads(body) if body is not None else None
        except ValueError:
            return frozenset()  # the SDK answers malformed JSON itself
        needed: set[str] = set()
        for message in parsed if isinstance(parsed, list) else [parsed]:
            if isinstance(message, dict) and message.get("method") == "tools/call":
                params = message.get("params")
                name = params.get("name") if isinstance(params, dict) else None
                if isinstance(name, str):
                    needed |= self.tool_scopes.get(name, frozenset())
        return frozenset(needed)

    def _ordered(self, scopes: Iterable[str]) -> list[str]:
        wanted = set(scopes)
        return [s for s in self.scopes if s in wanted] + sorted(wanted - set(self.scopes))

    async def _challenge(self, scope: Scope, send: Send, status: int, error: str | None, scopes: Sequence[str],
                         description: str) -> None:
        header = www_authenticate(self.resource_metadata_url, scopes, error)
        body = {"error": error, "error_description": description} if error else {"error_description": description}
        response = JSONResponse(body, status_code=status, headers={"www-authenticate": header})
        await response(scope, _no_receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _bearer_sent(scope: Scope) -> bool:
    return any(k == b"authorization" and v[:7].lower() == b"bearer " for k, v in scope["headers"])


async def _buffer(receive: Receive, limit: int) -> tuple[list[Message], bytes | None]:
    """Read the request body (up to ``limit``); the messages read, and the body (None if too big)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body") or size > limit:
            break
    complete = messages[-1]["type"] == "http.request" and not messages[-1].get("more_body") and size <= limit
    return messages, b"".join(m.get("body", b"") for m in messages) if complete else None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The broker's demo MCP server, protected by broker tokens.")
    parser.add_argument("--issuer", required=True, help="the broker's issuer, e.g. http://127.0.0.1:8000")
    parser.add_argument("--port", type=int, default=9000, help="port on 127.0.0.1 (default 9000)")
    parser.add_argument("--resource", help="resource URI (default http://127.0.0.1:PORT/demo/mcp)")
    parser.add_argument("--feed-client-id", default=os.environ.get("BROKER_FEED_CLIENT_ID"),
                        help="this server's broker client (registered with --introspect), to follow the revocation "
                             "feed (or BROKER_FEED_CLIENT_ID); its secret comes from BROKER_FEED_CLIENT_SECRET")
    parser.add_argument("--require-dpop", action="store_true",
                        help="refuse bearer tokens: only DPoP-bound tokens with their proof (RFC 9449)")
    args = parser.parse_args(argv)
    resource = args.resource or f"http://127.0.0.1:{args.port}{DEFAULT_PATH}"
    path = urlsplit(resource).path or "/"
    feed = None
    if args.feed_client_id:
        feed = RevocationFeed(args.issuer, args.feed_client_id, os.environ.get("BROKER_FEED_CLIENT_SECRET", ""))

    import uvicorn

    app = create_app(args.issuer, resource, path, revocations=feed, require_dpop=args.require_dpop)
    uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
