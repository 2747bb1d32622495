"""Token introspection (RFC 7662) by a resource server's confidential client, over a pool of live tokens.

The broker introspects its own JWT access tokens. oidc-provider refuses to introspect JWT access
tokens (`reject_structured_tokens.js`: "Structured JWT Tokens cannot be introspected"), so on the peer
the pool holds opaque access tokens; the comparison is endpoint against endpoint, not token format.
"""

from __future__ import annotations

from urllib.parse import quote

from bench.harness.http1 import FORM, Connection, Links, RoundRobin
from bench.harness.load import expect

POOL = 64


class IntrospectClient:
    def __init__(self, http: Connection | RoundRobin, headers: bytes, path: str, tokens: list[str], start: int):
        self.http, self.headers, self.path = http, FORM + headers, path
        self.bodies = [b"token=" + quote(t, safe="").encode() for t in tokens]
        self.next = start

    async def __call__(self) -> bool:
        body = self.bodies[self.next % len(self.bodies)]
        self.next += 1
        response = await self.http.request("POST", self.path, self.headers, body)
        return expect(response, 200, b'"active":true')


class Introspection:
    name = "introspect"
    consumes = False

    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def clients(self, target, links: Links, n: int, budget: int) -> list[IntrospectClient]:
        if not self.tokens or getattr(target, "forgets_tokens", False):
            self.tokens = await target.introspectable_tokens(links, POOL)
        return [IntrospectClient(links.http(i), target.introspect_auth, target.introspect_path, self.tokens, i)
                for i in range(n)]
