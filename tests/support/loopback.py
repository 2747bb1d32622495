"""An httpx transport that sends the broker's own outgoing calls back into the app.

Calls to the broker's own host go to ``self.app`` over ASGI (its test IdP); hosts registered in
``others`` (fake security-event transmitters, fake IdPs) go to their handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Forwards to ``self.app`` over ASGI; set ``app`` once the application exists."""

    def __init__(self) -> None:
        self.app: Any = None
        self.others: dict[str, Callable[[httpx.Request], httpx.Response]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        handler = self.others.get(request.url.host)
        if handler is not None:
            return await httpx.MockTransport(handler).handle_async_request(request)
        if self.app is None:
            raise httpx.ConnectError("loopback app not set", request=request)
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)
