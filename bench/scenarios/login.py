"""Full federated sign-in per iteration: authorize -> test IdP form -> credentials -> callback -> token.

Five HTTP requests per iteration (the broker makes two more to its own test IdP during the callback:
the upstream token request, and the JWKS once). Users rotate over the test IdP's directory.
"""

from __future__ import annotations

from bench.harness.http1 import Connection, Links, RoundRobin
from bench.targets.broker import BrokerSetup
from bench.targets.browser import Client, sign_in


class LoginClient:
    def __init__(self, http: Connection | RoundRobin, app: Client, resource: str, users: list[str], start: int):
        self.http, self.app, self.resource, self.users, self.next = http, app, resource, users, start

    async def __call__(self) -> bool:
        user = self.users[self.next % len(self.users)]
        self.next += 1
        tokens = await sign_in(self.http, self.app, user, self.resource)
        return "access_token" in tokens


class Login:
    name = "full-login"
    consumes = False

    async def clients(self, target, links: Links, n: int, budget: int) -> list[LoginClient]:
        setup = target.setup
        return [LoginClient(links.http(i), setup.clients["app"], setup.resource, BrokerSetup.users(), i)
                for i in range(n)]
