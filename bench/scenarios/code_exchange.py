"""Authorization-code exchange at the token endpoint (PKCE, resource), one pre-minted code per request.

Codes are minted before each run through the broker's Python API (``broker.oauth.codes.issue``) in one
transaction on the same database, for users that signed in once through the real flow; driving
/authorize and the test IdP for each code would cost as much as the full-login scenario. The exchange
is then the broker's whole work for it: client auth, code claim, PKCE, user, policy, family insert,
signature, audit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import urlencode

from sqlalchemy import select

from bench.harness.http1 import FORM, Connection, Links, RoundRobin
from bench.harness.load import Exhausted, expect
from bench.targets.browser import REDIRECT, pkce
from broker import config
from broker.cli.common import open_database
from broker.oauth import codes
from broker.storage.models import User


class CodeClient:
    def __init__(self, http: Connection | RoundRobin, headers: bytes, bodies: Iterator[bytes]) -> None:
        self.http, self.headers, self.bodies = http, FORM + headers, bodies

    async def __call__(self) -> bool:
        body = next(self.bodies, None)
        if body is None:
            raise Exhausted
        return expect(await self.http.request("POST", "/token", self.headers, body), 200)


class CodeExchange:
    name = "code-exchange"
    consumes = True

    def __init__(self) -> None:
        self.database = None

    async def clients(self, target, links: Links, n: int, budget: int) -> list[CodeClient]:
        setup = target.setup
        if self.database is None:
            await target.mint_refresh_tokens(links, 1)  # a user signed in through the real flow
            self.database = open_database(config.load(setup.config_path))
        bodies = iter(self.mint(setup, budget))
        return [CodeClient(links.http(i), setup.clients["app"].auth, bodies) for i in range(n)]

    def mint(self, setup, count: int) -> list[bytes]:
        app = setup.clients["app"].client_id
        now = dt.datetime.now(dt.UTC)
        bodies = []
        with self.database.transaction() as session:
            users = list(session.scalars(select(User.id)))
            for i in range(count):
                verifier, challenge = pkce()
                code = codes.issue(session, client_id=app, user_id=users[i % len(users)], redirect_uri=REDIRECT,
                                   resource=setup.resource, scope="tools:read", code_challenge=challenge,
                                   nonce=None, auth_time=now, acr=None, now=now, lifetime=600)
                bodies.append(urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                         "code_verifier": verifier, "resource": setup.resource}).encode())
        return bodies
