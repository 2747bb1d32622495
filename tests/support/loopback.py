"""An httpx transport that sends the broker's own outgoing calls (to its test IdP) back into the app."""

from __future__ import annotations

from typing import Any

import httpx


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Forwards to ``self.app`` over ASGI; set ``app`` once the application exists."""

    def __init__(self) -> None:
        self.app: Any = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.app is None:
            raise httpx.ConnectError("loopback app not set", request=request)
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)
