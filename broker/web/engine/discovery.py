"""``GET /jwks`` and the authorization server metadata documents, from the caches the token side keeps."""

from __future__ import annotations

from broker.keys.ring import jwk_set
from broker.oauth import metadata
from broker.registry import servers
from broker.registry.servers import Registry
from broker.storage.models import utcnow
from broker.web.engine.http import Header, Reply, Request, json_reply
from broker.web.state import BrokerState

JWKS_HEADERS: tuple[Header, ...] = ((b"content-type", b"application/jwk-set+json"),  # RFC 7517 §8.5.1
                                    (b"cache-control", b"public, max-age=300"))
METADATA_HEADERS: tuple[Header, ...] = ((b"cache-control", b"public, max-age=300"),)


class Discovery:
    """The two documents clients find the broker by; both change only when a cache is read again."""

    def __init__(self, state: BrokerState) -> None:
        self.state = state
        self._document: tuple[Registry, Reply] | None = None

    async def jwks(self, request: Request) -> Reply:
        ring = self.state.keyring
        records = ring.fresh_records()
        if records is None:
            async with self.state.database.hot.read() as tx:
                records = await ring.records_hot(tx)
        reply = json_reply(200, jwk_set(records, ring.grace, utcnow()), ())
        reply.headers[:] = JWKS_HEADERS  # its own media type instead of application/json
        return reply

    async def metadata(self, request: Request) -> Reply:
        engine = self.state.database.engine
        registry = servers.fresh_registry(engine)
        if registry is None:
            async with self.state.database.hot.read() as tx:
                registry = await servers.registry_hot(tx)
        known = self._document
        if known is not None and known[0] is registry:
            return known[1]
        document = metadata.authorization_server_metadata(self.state.settings, servers.scopes_of(registry))
        reply = json_reply(200, document, METADATA_HEADERS)
        self._document = (registry, reply)
        return reply
