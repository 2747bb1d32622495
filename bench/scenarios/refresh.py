"""Refresh grant with rotation: each virtual client owns one refresh-token family and rotates it.

Works on any target that can mint refresh tokens (``mint_refresh_tokens``) and names the token
request's client authentication (``refresh_auth``): the broker (families from full sign-ins), the
bare endpoint (rows it inserts), oidc-provider (grants made through its adapter API). A family whose
refresh fails is dropped and a new one minted before the next run, so one error does not stop a client.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from bench.harness.http1 import FORM, Connection, Links, RoundRobin
from bench.harness.load import Exhausted, expect


class Family:
    def __init__(self, token: str) -> None:
        self.token: str | None = token


class RefreshClient:
    def __init__(self, http: Connection | RoundRobin, headers: bytes, family: Family) -> None:
        self.http, self.headers, self.family = http, FORM + headers, family

    async def __call__(self) -> bool:
        if self.family.token is None:
            raise Exhausted
        body = b"grant_type=refresh_token&refresh_token=" + quote(self.family.token, safe="").encode()
        response = await self.http.request("POST", "/token", self.headers, body)
        if response.status != 200:
            self.family.token = None  # rotated or revoked: never presented again (it would be a replay)
            return expect(response, 200)
        self.family.token = json.loads(response.body)["refresh_token"]
        return True


class Refresh:
    name = "refresh"
    consumes = False

    def __init__(self) -> None:
        self.families: list[Family] = []

    async def clients(self, target, links: Links, n: int, budget: int) -> list[RefreshClient]:
        self.families = [f for f in self.families if f.token is not None]
        if len(self.families) < n:
            tokens = await target.mint_refresh_tokens(links, n - len(self.families))
            self.families += [Family(token) for token in tokens]
        return [RefreshClient(links.http(i), target.refresh_auth, family)
                for i, family in enumerate(self.families[:n])]
