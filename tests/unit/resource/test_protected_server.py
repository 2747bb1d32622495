"""examples/protected_server.py, served for real (uvicorn on a free loopback port) and mounted.

The verifier gets the fake broker's JWKS through an injected httpx client; the MCP SDK's own client
(streamable HTTP + ClientSession) calls ``whoami`` with a bearer token.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import ProtectedResourceMetadata
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.support.postgres import free_port

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "protected_server.py"
ISSUER = "http://127.0.0.1:8000"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "test", "version": "0"}}}
CALL_WHOAMI = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("protected_server_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()


def challenge(response: httpx.Response, scheme: str = "Bearer") -> dict[str, str]:
    """The parameters of the response's one ``scheme`` challenge."""
    headers = [h for h in response.headers.get_list("www-authenticate") if h.startswith(f"{scheme} ")]
    assert len(headers) == 1, response.headers.get_list("www-authenticate")
    return dict(re.findall(r'(\w+)="([^"]*)"', headers[0]))


@asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn (lifespan included) on 127.0.0.1:``port`` inside this event loop."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


@pytest.fixture
async def demo(broker: Any) -> AsyncIterator[Any]:
    """The demo server on a free port; ``broker`` signs tokens for its resource URI."""
    port = free_port()
    broker.resource = f"http://127.0.0.1:{port}/demo/mcp"
    broker.clock = time.time  # uvicorn serves in real time
    verifier = broker.verifier()
    async with serve(example.create_app(ISSUER, broker.resource, verifier=verifier), port) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            yield http
    await verifier.aclose()


async def test_no_token_gets_401_pointing_at_the_metadata(broker: Any, demo: httpx.AsyncClient) -> None:
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers=MCP_HEADERS)
    assert response.status_code == 401
    params = challenge(response)
    assert params == {"scope": "tools:read tools:call",
                      "resource_metadata": f"{demo.base_url}/.well-known/oauth-protected-resource/demo/mcp"}


async def test_refused_token_gets_401_invalid_token(broker: Any, demo: httpx.AsyncClient) -> None:
    other_audience = broker.sign(aud="http://127.0.0.1:1/other/mcp")
    response = await demo.post("/demo/mcp", json=INITIALIZE,
                               headers={**MCP_HEADERS, "authorization": f"Bearer {other_audience}"})
    assert response.status_code == 401
    assert challenge(response)["error"] == "invalid_token"


async def test_token_without_tools_read_gets_403(broker: Any, demo: httpx.AsyncClient) -> None:
    token = broker.sign(scope="tools:call")
    response = await demo.post("/demo/mcp", json=INITIALIZE,
                               headers={**MCP_HEADERS, "authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert challenge(response)["error"] == "insufficient_scope"
    assert challenge(response)["scope"] == "tools:read"


async def test_protected_resource_metadata_names_the_broker(broker: Any, demo: httpx.AsyncClient) -> None:
    response = await demo.get("/.well-known/oauth-protected-resource/demo/mcp")
    assert response.status_code == 200
    assert response.json() == {
        "resource": broker.resource,
        "authorization_servers": [ISSUER],
        "scopes_supported": ["tools:read", "tools:call"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Broker demo MCP server",
        "dpop_signing_alg_values_supported": ["ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512",
                                              "RS256", "RS384", "RS512"],
    }
    ProtectedResourceMetadata.model_validate(response.json())


async def test_mcp_client_with_a_broker_token_calls_whoami(broker: Any, demo: httpx.AsyncClient) -> None:
    token = broker.sign(sub="alice", email="alice@example.com", client_id="claude", scope="tools:read tools:call")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=10) as http:
        async with streamable_http_client(f"{demo.base_url}/demo/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                assert [t.name for t in tools.tools] == ["whoami"]
                result = await session.call_tool("whoami", {})
    assert not result.is_error
    assert result.structured_content == {"sub": "alice", "email": "alice@example.com", "client_id": "claude",
                                         "scopes": ["tools:read", "tools:call"]}


async def test_mcp_client_with_a_dpop_bound_token_calls_whoami(broker: Any, demo: httpx.AsyncClient) -> None:
    """The SDK's client through tests.support.dpop_client.DpopAuth: a fresh proof on every request."""
    from tests.support.dpop import DpopKey
    from tests.support.dpop_client import DpopAuth

    key = DpopKey()
    auth = DpopAuth(key, broker.sign(sub="alice", client_id="claude", cnf={"jkt": key.jkt}))
    async with httpx2.AsyncClient(auth=auth, timeout=10) as http:
        async with streamable_http_client(f"{demo.base_url}/demo/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("whoami", {})
    assert not result.is_error and result.structured_content["sub"] == "alice"
    assert auth.proofs_sent >= 3  # initialize, initialized, tools/call: each with its own proof


async def test_tools_call_without_tools_call_scope_gets_a_step_up_challenge(broker: Any,
                                                                             demo: httpx.AsyncClient) -> None:
    token = broker.sign(scope="tools:read")
    headers = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
    initialized = await demo.post("/demo/mcp", json=INITIALIZE, headers=headers)
    assert initialized.status_code == 200
    session = {"mcp-session-id": initialized.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    response = await demo.post("/demo/mcp", json=CALL_WHOAMI, headers={**headers, **session})
    assert response.status_code == 403
    params = challenge(response)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "tools:read tools:call"
    # the same token may still list tools: the body it sent was passed on untouched
    listed = await demo.post("/demo/mcp", json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                             headers={**headers, **session})
    assert listed.status_code == 200 and "whoami" in listed.text


async def test_whoami_refuses_a_token_without_tools_call_even_past_the_http_layer(broker: Any) -> None:
    """Defence in depth: the tool checks the scope itself."""
    from mcp.server.auth.middleware.auth_context import auth_context_var
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.mcpserver.exceptions import ToolError

    access = await broker.verifier().verify_token(broker.sign(scope="tools:read"))
    reset = auth_context_var.set(AuthenticatedUser(access))
    try:
        with pytest.raises(ToolError, match="insufficient_scope"):
            example.whoami()
    finally:
        auth_context_var.reset(reset)


async def test_app_mounted_at_root_runs_through_the_host_lifespan(broker: Any) -> None:
    """What ``broker dev`` does: mount the demo at "/" and enter its lifespan from its own."""
    demo = example.create_app(ISSUER, broker.resource, verifier=broker.verifier())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with demo.router.lifespan_context(demo):
            yield

    host = Starlette(routes=[Mount("/", app=demo)], lifespan=lifespan)
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            unauthenticated = await http.post("/demo/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            assert unauthenticated.status_code == 401
            assert challenge(unauthenticated)["resource_metadata"] == \
                f"{ISSUER}/.well-known/oauth-protected-resource/demo/mcp"
            metadata = await http.get("/.well-known/oauth-protected-resource/demo/mcp")
            assert metadata.json()["authorization_servers"] == [ISSUER]
            assert (await http.get("/anything-else")).status_code == 404
            token = broker.sign()
            initialized = await http.post("/demo/mcp", json=INITIALIZE,
                                          headers={**MCP_HEADERS, "authorization": f"Bearer {token}"})
            assert initialized.status_code == 200
            assert "broker-demo" in initialized.text


def test_resource_path_must_match_the_endpoint_path() -> None:
    with pytest.raises(ValueError):
        example.create_app(ISSUER, f"{ISSUER}/other/mcp")


def test_non_loopback_resource_gets_dns_rebinding_protection_for_its_own_host() -> None:
    settings = example.transport_security("https://mcp.example.com/demo/mcp")
    assert settings.allowed_hosts == ["mcp.example.com"]
    assert settings.allowed_origins == ["https://mcp.example.com"]
    assert example.transport_security("http://127.0.0.1:9000/demo/mcp") is None


def test_the_minimal_example_in_the_docs_builds_a_protected_app() -> None:
    docs = (EXAMPLE.parents[1] / "docs" / "mcp-servers.md").read_text()
    code = re.search(r"```python\n(.*?)```", docs, re.S)
    assert code is not None
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(code.group(1), "docs/mcp-servers.md", "exec"), namespace)
    paths = [route.path for route in namespace["app"].routes]
    assert paths == ["/github", "/.well-known/oauth-protected-resource/github"]


def test_app_lists_the_two_paths_it_serves() -> None:
    app = example.create_app(ISSUER, f"{ISSUER}/demo/mcp")
    assert app.state.paths == ("/demo/mcp", "/.well-known/oauth-protected-resource/demo/mcp")


def test_the_dpop_example_in_the_docs_mounts_the_middleware_in_front_of_the_sdk() -> None:
    from broker.resource import DpopAuthMiddleware

    docs = (EXAMPLE.parents[1] / "docs" / "mcp-servers.md").read_text()
    first, dpop = re.findall(r"```python\n(.*?)```", docs, re.S)[:2]
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(first + dpop, "docs/mcp-servers.md", "exec"), namespace)
    middleware = [m.cls for m in namespace["app"].user_middleware]
    assert middleware[0] is DpopAuthMiddleware and len(middleware) > 1
