"""ID-JAG (jwt-bearer) grant: every request redeems a fresh ES256 ID-JAG (unique jti, 100 users).

The assertions are signed by the fake IdP in the generator process before the run, ``budget`` of them,
so the broker does the whole grant each time: verify, jti insert, user, policy, signature, audit.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from bench.harness.http1 import FORM, Connection, Links, RoundRobin
from bench.harness.load import Exhausted, expect

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class IdJagClient:
    def __init__(self, http: Connection | RoundRobin, headers: bytes, assertions: Iterator[str]) -> None:
        self.http, self.headers, self.assertions = http, FORM + headers, assertions

    async def __call__(self) -> bool:
        assertion = next(self.assertions, None)
        if assertion is None:
            raise Exhausted
        body = f"grant_type={quote(JWT_BEARER, safe='')}&assertion={assertion}".encode()
        return expect(await self.http.request("POST", "/token", self.headers, body), 200)


class IdJag:
    name = "id-jag"
    consumes = True

    async def clients(self, target, links: Links, n: int, budget: int) -> list[IdJagClient]:
        setup = target.setup
        agent = setup.clients["agent"]
        shared = iter(setup.idp.assertions(budget, setup.issuer, agent.client_id, setup.resource))
        return [IdJagClient(links.http(i), agent.auth, shared) for i in range(n)]
