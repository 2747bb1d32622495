"""Client credentials (RFC 6749 §4.4): a confidential client asks for a token for one resource, again and again.

Works on any target that names a machine client (``machine_auth``, Basic credentials) and the resource it may
reach (``machine_resource``): the broker (client credentials allowed by policy for that client) and
oidc-provider (its clientCredentials feature with resource indicators). Both sign one JWT access token per
request; the broker also records one audit event.
"""

from __future__ import annotations

from urllib.parse import quote

from bench.harness.http1 import FORM, Connection, Links, RoundRobin
from bench.harness.load import expect


class ClientCredentialsClient:
    def __init__(self, http: Connection | RoundRobin, headers: bytes, body: bytes) -> None:
        self.http, self.headers, self.body = http, FORM + headers, body

    async def __call__(self) -> bool:
        response = await self.http.request("POST", "/token", self.headers, self.body)
        return expect(response, 200, b'"access_token"')


class ClientCredentials:
    name = "client-credentials"
    consumes = False

    async def clients(self, target, links: Links, n: int, budget: int) -> list[ClientCredentialsClient]:
        body = (b"grant_type=client_credentials&scope=tools%3Aread&resource="
                + quote(target.machine_resource, safe="").encode())
        return [ClientCredentialsClient(links.http(i), target.machine_auth, body) for i in range(n)]
