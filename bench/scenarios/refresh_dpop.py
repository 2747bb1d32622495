"""Refresh with DPoP (RFC 9449): the refresh scenario with a fresh ES256 proof on every request, each virtual
client signing with its own key, so the broker checks the proof, spends its ``jti`` and binds the new access
token (``cnf.jkt``, ``token_type`` DPoP). Beside ``refresh`` (bearer) it measures what DPoP adds to a refresh.

Only the broker serves it (``setup.issuer`` names the token endpoint a proof is for). The proofs are made by
the load generator, as a client makes them: their cost shows in the generator's busy share, not the server's.
"""

from __future__ import annotations

from bench.harness.http1 import Connection, Links, RoundRobin
from bench.scenarios.refresh import Family, Refresh, RefreshClient
from tests.support.dpop import DpopKey


class DpopRefreshClient(RefreshClient):
    def __init__(self, http: Connection | RoundRobin, headers: bytes, family: Family, token_url: str) -> None:
        super().__init__(http, headers, family)
        self.plain, self.key, self.token_url = self.headers, DpopKey(), token_url

    async def __call__(self) -> bool:
        self.headers = self.plain + b"DPoP: " + self.key.proof("POST", self.token_url).encode() + b"\r\n"
        return await super().__call__()


class RefreshDpop(Refresh):
    name = "refresh-dpop"

    async def clients(self, target, links: Links, n: int, budget: int) -> list[RefreshClient]:
        plain = await super().clients(target, links, n, budget)
        token_url = f"{target.setup.issuer}/token"
        return [DpopRefreshClient(client.http, target.refresh_auth, client.family, token_url) for client in plain]
