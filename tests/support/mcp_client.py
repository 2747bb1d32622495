"""The MCP Python SDK's OAuth client as the e2e tests use it: token storage in memory, and one call."""

from __future__ import annotations

import json

import httpx2
from mcp.client.auth.oauth2 import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT_URI = "http://127.0.0.1:33418/callback"


class InMemoryTokenStorage:
    def __init__(self, client_info: OAuthClientInformationFull | None = None):
        self.tokens: OAuthToken | None = None
        self.client_info = client_info
        self.history: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def metadata(auth_method: str) -> OAuthClientMetadata:
    return OAuthClientMetadata(client_name="SDK e2e client", redirect_uris=[REDIRECT_URI],
                               grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                               token_endpoint_auth_method=auth_method)


async def call_whoami(url: str, provider: OAuthClientProvider) -> dict:
    async with httpx2.AsyncClient(auth=provider, timeout=30, follow_redirects=False) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                assert [t.name for t in tools.tools] == ["whoami"]
                result = await session.call_tool("whoami", {})
    assert not result.is_error, result
    return json.loads(result.content[0].text)
