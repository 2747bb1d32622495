"""Follow the broker's revocation feed, so locally verified tokens die within seconds of a revocation.

``RevocationFeed.run()`` polls ``<issuer>/revocations?since=CURSOR`` (every 2 s by default),
authenticated as the MCP server's own confidential client (registered with ``--introspect``), and
keeps what it learns in memory: revoked token ids, revoked refresh-token families (``sid``), users'
not-before times and disabled clients. ``is_revoked(claims)`` is the ``BrokerTokenVerifier`` hook.

When the feed cannot be reached the last known state stays in force (soft fail, logged); with
``fail_closed_after`` set, every token is refused once the feed is that many seconds stale. Until the
first page arrives, failures within ``startup_grace`` seconds are logged at debug level only: a server
started together with the broker (``broker dev``) polls before the broker listens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from broker.resource.claims import VerifiedClaims

log = logging.getLogger("broker.resource.revocation")
FORGET_AFTER = 86400.0  # token ids and families older than any token they could concern


class RevocationFeed:
    def __init__(self, issuer: str, client_id: str, client_secret: str, *, interval: float = 2.0,
                 feed_url: str | None = None, http: httpx.AsyncClient | None = None,
                 fail_closed_after: float | None = None, clock: Callable[[], float] = time.time,
                 startup_grace: float = 10.0):
        self.feed_url = feed_url or f"{issuer}/revocations"
        self.auth = httpx.BasicAuth(client_id, client_secret)
        self.interval = interval
        self.fail_closed_after = fail_closed_after
        self.clock = clock
        self.startup_grace = startup_grace
        self._http = http
        self._owns_http = http is None
        self.cursor = 0
        self.synced_at: float | None = None
        self.token_ids: dict[str, float] = {}
        self.families: dict[str, float] = {}
        self.not_before: dict[str, int] = {}
        self.clients: set[str] = set()

    def is_revoked(self, claims: VerifiedClaims) -> bool:
        """True when the broker has revoked this token, its family, its user (since before it), or its client."""
        if self._too_stale():
            return True
        return (claims.jwt_id in self.token_ids
                or (claims.sid is not None and claims.sid in self.families)
                or claims.issued_at < self.not_before.get(claims.subject, -1)
                or claims.client_id in self.clients)

    async def poll_once(self) -> int:
        """Fetch every page after the cursor; returns how many entries were applied."""
        applied, more = 0, True
        while more:
            response = await self._client().get(self.feed_url, params={"since": self.cursor}, auth=self.auth,
                                                timeout=5.0)
            response.raise_for_status()
            page = response.json()
            for entry in page["revocations"]:
                self._apply(entry)
            applied += len(page["revocations"])
            self.cursor, more = int(page["cursor"]), bool(page.get("has_more"))
        self.synced_at = self.clock()
        self._forget_old()
        return applied

    async def run(self) -> None:
        """Poll forever (run it in the MCP server's lifespan task group)."""
        started = self.clock()
        while True:
            try:
                await self.poll_once()
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                starting = self.synced_at is None and self.clock() - started < self.startup_grace
                log.log(logging.DEBUG if starting else logging.WARNING, "revocation feed unavailable: %s",
                        type(exc).__name__)
            await anyio.sleep(self.interval)

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()

    def _apply(self, entry: dict[str, Any]) -> None:
        kind, now = entry.get("kind"), self.clock()
        if kind == "token" and entry.get("jti"):
            self.token_ids[str(entry["jti"])] = now
        elif kind == "family" and entry.get("sid"):
            self.families[str(entry["sid"])] = now
        elif kind == "user" and entry.get("sub"):
            sub = str(entry["sub"])
            self.not_before[sub] = max(self.not_before.get(sub, 0), int(entry.get("not_before", 0)))
        elif kind == "client" and entry.get("client_id"):
            self.clients.add(str(entry["client_id"]))

    def _forget_old(self) -> None:
        cutoff = self.clock() - FORGET_AFTER
        for table in (self.token_ids, self.families):
            for key in [k for k, seen in table.items() if seen < cutoff]:
                del table[key]

    def _too_stale(self) -> bool:
        if self.fail_closed_after is None:
            return False
        return self.synced_at is None or self.clock() - self.synced_at > self.fail_closed_after

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http
