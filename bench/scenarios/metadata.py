"""GET of a static document: the JWKS, and the authorization server metadata (RFC 8414)."""

from __future__ import annotations

from bench.harness.http1 import Connection, Links, RoundRobin
from bench.harness.load import expect


class GetClient:
    def __init__(self, http: Connection | RoundRobin, path: str) -> None:
        self.http, self.path = http, path

    async def __call__(self) -> bool:
        return expect(await self.http.request("GET", self.path), 200)


class Get:
    consumes = False

    def __init__(self, name: str, path: str) -> None:
        self.name, self.path = name, path

    async def clients(self, target, links: Links, n: int, budget: int) -> list[GetClient]:
        return [GetClient(links.http(i), self.path) for i in range(n)]


def jwks() -> Get:
    return Get("jwks", "/jwks")


def discovery() -> Get:
    return Get("discovery", "/.well-known/oauth-authorization-server")
