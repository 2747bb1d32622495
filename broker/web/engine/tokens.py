"""``POST /token``, ``/introspect``, ``/revoke`` and ``GET /revocations``: parse, fetch what the network must give,
then one call of the token engine (``broker.oauth.engine``) on the hot lane."""

from __future__ import annotations

import dataclasses

from broker.federation.errors import InvalidIdToken, UpstreamError, UpstreamRejected
from broker.oauth.engine import Answer, Call, TokenEngine
from broker.oauth.errors import InvalidRequest
from broker.oauth.params import Params
from broker.storage.models import utcnow
from broker.web.engine.http import NO_STORE, Reply, Request, error_reply, json_reply
from broker.web.state import BrokerState

FEED_PAGE = 500
MAX_CURSOR = 2**63 - 1  # revocations.id is a 64-bit integer on both stores: a larger one cannot be bound


class TokenSide:
    """The token side's handlers for the front (``broker.web.engine.http.Route``)."""

    def __init__(self, state: BrokerState) -> None:
        self.state = state

    @property
    def engine(self) -> TokenEngine:
        return self.state.oauth.engine

    async def token(self, request: Request) -> Reply:
        params = _form(request)
        if isinstance(params, Reply):
            return params
        state = self.state
        if params.get("grant_type") == "refresh_token" and state.upstream_check and state.upstream_check.enabled:
            refused = await self._check_upstream(params.get("refresh_token"))
            if refused is not None:
                return refused
        answer = await self.engine.token(state.database.hot, await self._call(request, params, request.dpop))
        return _reply(_exposing_nonce(answer) if request.dpop else answer)

    async def introspect(self, request: Request) -> Reply:
        params = _form(request)
        if isinstance(params, Reply):
            return params
        return _reply(await self.engine.introspect(self.state.database.hot, await self._call(request, params)))

    async def revoke(self, request: Request) -> Reply:
        params = _form(request)
        if isinstance(params, Reply):
            return params
        return _reply(await self.engine.revoke(self.state.database.hot, await self._call(request, params)))

    async def revocations(self, request: Request) -> Reply:
        try:
            query = Params.from_query(request.query)
            cursor, limit = int(query.get("since") or 0), int(query.get("limit") or FEED_PAGE)
        except (InvalidRequest, ValueError):
            return _invalid("since and limit must be integers")
        if not 0 <= cursor <= MAX_CURSOR or limit < 1:
            return _invalid(f"since must be a cursor from 0 to {MAX_CURSOR} and limit positive")
        call = await self._call(request, Params([]))
        return _reply(await self.engine.feed(self.state.database.hot, call, cursor, limit))

    async def _call(self, request: Request, params: Params, dpop: tuple[str, ...] = ()) -> Call:
        authorization = request.header("authorization")
        fetched = await self.engine.prefetch(self.state.database.hot, params, authorization)
        return Call(params, authorization, request.client_ip, self.state.oauth.now(), fetched, dpop)

    async def _check_upstream(self, refresh_token: str | None) -> Reply | None:
        """Ask the user's IdP first (``check_upstream_on_refresh``); a reply when the refresh must fail."""
        state, check_up = self.state, self.state.upstream_check
        assert check_up is not None
        check = await state.database.cold(check_up.find, refresh_token) if refresh_token else None
        connector = check_up.connectors.get(check.idp_id) if check else None
        if check is None or connector is None:
            return None
        try:
            rotated = await connector.refresh(check.refresh_token)
        except (UpstreamRejected, InvalidIdToken) as exc:
            await state.database.cold(check_up.refused, check, exc.upstream_error, utcnow())
            return error_reply(400, "invalid_grant", "the identity provider no longer accepts this sign-in")
        except UpstreamError:
            return error_reply(503, "temporarily_unavailable", "the identity provider is unavailable",
                               ((b"retry-after", b"5"),))
        await state.database.cold(check_up.accepted, check, rotated)
        return None


def _form(request: Request) -> Params | Reply:
    """The form, strictly: no parameter may repeat at these endpoints (RFC 6749 §3.2)."""
    try:
        params = Params.from_form(request.body, request.header("content-type"))
        params.reject_duplicates()
    except InvalidRequest as error:
        return _invalid(error.description or "malformed request")
    return params


def _invalid(description: str) -> Reply:
    return error_reply(400, "invalid_request", description)


def _exposing_nonce(answer: Answer) -> Answer:
    """A ``DPoP-Nonce`` a browser client may read (CORS hides other response headers from scripts)."""
    if not any(name == "dpop-nonce" for name, _ in answer.headers):
        return answer
    return dataclasses.replace(answer, headers=(*answer.headers, ("access-control-expose-headers", "DPoP-Nonce")))


def _reply(answer: Answer) -> Reply:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
    return json_reply(answer.status, answer.body, headers or NO_STORE)
