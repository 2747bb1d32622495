"""The token engine: the token side's protocol as plain functions over typed values, on the hot lane.

``TokenEngine`` answers ``/token`` (every grant), ``/introspect``, ``/revoke`` and the revocation feed.
Each call is one transaction of the hot lane (``broker.storage.hot``); what it needs from the network (a
client's metadata document, an ID-JAG issuer's keys) is fetched before the transaction begins
(``prefetch``). A refusal is an answer, not an exception, and what was written before it (a reuse
revocation, a denial's audit event) commits with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error, UnsupportedGrantTypeError

from broker.config import Settings
from broker.keys.ring import ActiveKey, KeyRing, jwk_set
from broker.oauth import cimd
from broker.oauth.client_keys import InvalidKeys
from broker.oauth.clients import ClientDirectory
from broker.oauth.engine import assertions, dpop, grants, introspection
from broker.oauth.engine.clients import RefetchKeys, assertion_subject, basic_credentials
from broker.oauth.engine.context import Answer, Call, Fetched, Grant, Undone, refusal
from broker.oauth.errors import InvalidClientError
from broker.oauth.id_jag import JWT_BEARER, TOKEN_EXCHANGE, AssertionKeys
from broker.oauth.id_tokens import IdTokens
from broker.oauth.params import Params
from broker.oauth.tokens import AccessTokens, RefreshTokens
from broker.oauth.verification import VerifiedAccessTokens
from broker.policy import PolicySource
from broker.resource.dpop import DpopProof
from broker.storage import clients as client_repo
from broker.storage.enums import ClientKind, ClientStatus
from broker.storage.hot import HotLane, Tx

__all__ = ["Answer", "Call", "Fetched", "TokenEngine"]

Step = Callable[[Grant], Awaitable[Answer]]


class TokenEngine:
    def __init__(self, settings: Settings, keyring: KeyRing, policy: PolicySource, clients: ClientDirectory,
                 assertion_keys: AssertionKeys, dpop_nonce_key: bytes) -> None:
        self.settings = settings
        self.issuer = settings.issuer
        self.keyring = keyring
        self.policy = policy
        self.cimd = clients.cimd
        self.key_sets = clients.key_sets  # private_key_jwt clients' keys at a jwks_uri
        self.assertion_keys = assertion_keys
        self.access_tokens = AccessTokens(settings, keyring)
        self.refresh_tokens = RefreshTokens(settings)
        self.id_tokens = IdTokens(settings, keyring)
        self.verified_access_tokens = VerifiedAccessTokens()  # introspection: signatures checked once
        self.dpop = dpop.TokenProofs(settings, dpop_nonce_key)
        # Enterprise-Managed Authorization: redeem ID-JAGs from trusted IdPs; issue them for other servers.
        self.assertion_issuers = {t.issuer: t for t in settings.id_jag.trusted_issuers}
        self.assertion_audiences = {a.issuer: a for a in settings.id_jag.audiences if a.issuer != self.issuer}
        self.grants: dict[str, Step] = {"authorization_code": grants.authorization_code,
                                        "refresh_token": grants.refresh_token,
                                        "client_credentials": grants.client_credentials}
        if self.assertion_issuers:
            self.grants[JWT_BEARER] = assertions.jwt_bearer
        if self.assertion_audiences:
            self.grants[TOKEN_EXCHANGE] = assertions.token_exchange

    # -- the endpoints

    async def token(self, lane: HotLane, call: Call) -> Answer:
        grant_type = call.params.get("grant_type")
        step = self.grants.get(grant_type or "")
        if step is None:
            return refusal(UnsupportedGrantTypeError(grant_type))
        if not call.dpop:
            return await self._run(lane, call, step, write=True)
        try:
            proof = self.dpop.check(call.dpop, call.now)
        except OAuth2Error as error:
            return refusal(error)
        return self._with_nonce(await self._run(lane, call, step, write=True, proof=proof), call)

    def _with_nonce(self, answer: Answer, call: Call) -> Answer:
        """A successful answer carries the next nonce when nonces are on (RFC 9449 §8.2)."""
        nonce = self.dpop.next_nonce(call.now) if answer.status == 200 else None
        if nonce is None:
            return answer
        return dataclasses.replace(answer, headers=(*answer.headers, ("dpop-nonce", nonce)))

    async def introspect(self, lane: HotLane, call: Call) -> Answer:
        return await self._run(lane, call, introspection.introspect, write=_writes(call))

    async def revoke(self, lane: HotLane, call: Call) -> Answer:
        return await self._run(lane, call, introspection.revoke, write=True)

    async def feed(self, lane: HotLane, call: Call, cursor: int, limit: int) -> Answer:
        return await self._run(lane, call, lambda grant: introspection.feed(grant, cursor, limit), write=_writes(call))

    async def _run(self, lane: HotLane, call: Call, step: Step, *, write: bool, proof: DpopProof | None = None
                   ) -> Answer:
        try:
            try:
                return await self._once(lane, call, step, write, proof)
            except RefetchKeys as stale:  # the transaction rolled back; fetch the client's keys again, then retry
                return await self._once(lane, await self._refetched(call, stale.uri), step, write, proof)
        except Undone as undone:  # rolled back: the refusal leaves everything as it was
            return refusal(undone.error)

    async def _once(self, lane: HotLane, call: Call, step: Step, write: bool, proof: DpopProof | None) -> Answer:
        async with (lane.write() if write else lane.read()) as tx:
            try:
                if proof is None:
                    return await step(Grant(self, tx, call))
                await dpop.spend(Grant(self, tx, call), proof)
                return await step(Grant(self, tx, call, proof))
            except OAuth2Error as error:
                return refusal(error)

    async def _refetched(self, call: Call, uri: str) -> Call:
        try:
            fresh: dict[str, Any] | InvalidKeys | None = await asyncio.to_thread(self.key_sets.refetch, uri)
        except InvalidKeys as exc:
            fresh = exc
        keys = dict(call.fetched.client_keys)
        if fresh is not None:  # None: refetched too recently; the cached keys decide
            keys[uri] = fresh
        fetched = dataclasses.replace(call.fetched, client_keys=keys, refetched=call.fetched.refetched | {uri})
        return dataclasses.replace(call, fetched=fetched)

    # -- what a call needs fetched first

    async def prefetch(self, lane: HotLane, params: Params, authorization: str | None) -> Fetched:
        """The network work of a call, done before its transaction: the metadata documents of the URL client ids
        it names (unless cached, or the client is disabled), and the key an ID-JAG names."""
        documents: dict[str, cimd.ClientMetadata | cimd.CimdError] = {}
        urls = _named_client_ids(params, authorization)
        for client_id in urls if self.cimd is not None else ():
            found = await self._document(lane, client_id)
            if found is not None:
                documents[client_id] = found
        key = None
        if params.get("grant_type") == JWT_BEARER and self.assertion_issuers:
            key = await self.assertion_keys.prepare(params.get("assertion"))
        client_keys = await self._client_keys(lane, params, documents)
        if not urls and key is None and not client_keys:
            return _NOTHING
        return Fetched(documents, key, urls, client_keys)

    async def _client_keys(self, lane: HotLane, params: Params,
                           documents: dict[str, cimd.ClientMetadata | cimd.CimdError]
                           ) -> dict[str, dict[str, Any] | InvalidKeys]:
        """The keys at the ``jwks_uri`` of the client a client assertion names (its stored row's, or its metadata
        document's), unless that client registered its keys inline."""
        assertion = params.get("client_assertion")
        if not assertion:
            return {}
        try:
            client_id = assertion_subject(assertion)
        except InvalidClientError:
            return {}  # refused in the transaction, with the same words
        uri = await self._jwks_uri(lane, client_id, documents.get(client_id))
        if not uri:
            return {}
        keys = self.key_sets.cached(uri)
        if keys is not None:
            return {uri: keys}
        try:
            return {uri: await asyncio.to_thread(self.key_sets.get, uri)}
        except InvalidKeys as exc:
            return {uri: exc}

    async def _jwks_uri(self, lane: HotLane, client_id: str,
                        document: cimd.ClientMetadata | cimd.CimdError | None) -> str | None:
        if isinstance(document, cimd.ClientMetadata):
            return document.jwks_uri
        async with lane.read() as tx:
            row = await client_repo.record_hot(tx, client_id)
        if row is not None and row.kind != ClientKind.CIMD:
            return row.jwks_uri
        cached = self.cimd.cache.get(client_id) if self.cimd is not None and cimd.is_client_id_url(client_id) else None
        return cached.jwks_uri if cached is not None else (row.jwks_uri if row is not None else None)

    async def _document(self, lane: HotLane, client_id: str) -> cimd.ClientMetadata | cimd.CimdError | None:
        assert self.cimd is not None
        try:
            if self.cimd.fresh(client_id) is not None:
                return None
        except cimd.CimdError as exc:
            return exc
        async with lane.read() as tx:
            row = await client_repo.record_hot(tx, client_id)
        if row is not None and (row.kind != ClientKind.CIMD or row.status != ClientStatus.ACTIVE):
            return None  # refused or answered without its document
        try:
            return await asyncio.to_thread(self.cimd.fetch, client_id)
        except cimd.CimdError as exc:
            return exc

    # -- the signing keys, from the ring's cache (read again in ``tx`` when due)

    async def signing_key(self, tx: Tx, now: dt.datetime) -> ActiveKey:
        return self.keyring.signer(await self.keyring.records_hot(tx), now)

    async def published_keys(self, tx: Tx, now: dt.datetime) -> list[dict[str, Any]]:
        records = await self.keyring.records_hot(tx)
        return jwk_set(records, self.keyring.grace, now)["keys"]


def _named_client_ids(params: Params, authorization: str | None) -> tuple[str, ...]:
    """The client ids a request names that are metadata-document URLs: in the form, in Basic credentials, as a
    client assertion's unverified subject."""
    named = [params.get("client_id"), basic_credentials(authorization)[0]]
    assertion = params.get("client_assertion")
    if assertion:
        try:
            named.append(assertion_subject(assertion))
        except InvalidClientError:
            pass  # refused in the transaction, with the same words
    return tuple(client_id for client_id in dict.fromkeys(named) if client_id and cimd.is_client_id_url(client_id))


def _writes(call: Call) -> bool:
    """Whether authenticating this call may write: a client assertion's ``jti``, a metadata document's client."""
    return call.params.get("client_assertion") is not None or bool(call.fetched.document_clients)


_NOTHING = Fetched()
