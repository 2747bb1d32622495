"""``FakeMetadataFetcher``: the broker's SSRF-guarded fetcher (CIMD documents, clients' ``jwks_uri``) as a table.

The network side is tested against a real https server in tests/unit/oauth/test_cimd_ssrf.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx

from broker.oauth.ssrf import FetchedDocument, FetchError


class FakeMetadataFetcher:
    """Answers fetches from a table by URL (unknown URLs: HTTP 404) and records every fetch."""

    def __init__(self) -> None:
        self.responses: dict[str, FetchedDocument | FetchError] = {}
        self.fetches: list[str] = []

    def serve(self, url: str, document: dict[str, Any] | bytes, cache_control: str | None = "max-age=300") -> None:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        headers = {"cache-control": cache_control} if cache_control else {}
        self.responses[url] = FetchedDocument(url=url, body=body, headers=headers,
                                              received_at=dt.datetime.now(dt.UTC), address="203.0.113.7")

    def fail(self, url: str, reason: str) -> None:
        self.responses[url] = FetchError(reason)

    def fetch(self, url: str) -> FetchedDocument:
        self.fetches.append(url)
        response = self.responses.get(url, FetchError("the server answered HTTP 404, not 200"))
        if isinstance(response, FetchError):
            raise response
        return response


@contextlib.contextmanager
def state_fetching_with(settings: Any, loopback: Any, fetcher: FakeMetadataFetcher) -> Iterator[Any]:
    """conftest's ``state`` (demo data seeded), with ``fetcher`` given to the composition root."""
    from broker import dev
    from broker.app import build_state, prepare

    broker_state = build_state(settings, http=httpx.AsyncClient(transport=loopback), client_metadata=fetcher)
    prepare(broker_state)
    with broker_state.database.transaction() as session:
        dev.seed(session, settings.issuer)
        dev.seed_policy(session)
    try:
        yield broker_state
    finally:
        broker_state.database.dispose()
