"""Introspection (RFC 7662), revocation (RFC 7009) and the revocation feed, on the hot lane.

All three read the database on every call, so every broker instance gives the same answer the moment a
revocation commits (``oauth.verification`` says when a token counts). Only clients registered as
resource servers (``may_introspect``) may introspect or read the feed; any client may revoke its own
tokens, public clients with their client_id, and an unknown token still gets a 200 (RFC 7009 §2.2).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from broker import audit
from broker.oauth import cutoff, secrets
from broker.oauth.client_auth import SECRET_METHODS
from broker.oauth.clients import AUTH_METHODS
from broker.oauth.engine.clients import authenticate
from broker.oauth.engine.context import NO_STORE, Answer, Grant, VerifiedClient
from broker.oauth.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    UnsupportedTokenTypeError,
)
from broker.oauth.verification import family_live, standing_allows, user_of, verify_signed
from broker.registry import servers
from broker.storage import grants, users
from broker.storage.grants import FamilyRow, RevocationRow

RESOURCE_SERVER_METHODS = (*SECRET_METHODS, "private_key_jwt")
FEED_METHODS = ("client_secret_basic",)  # a GET has no body, and RFC 6749 §2.3.1 keeps credentials out of the URL
TOKEN_TYPES = ("access_token", "refresh_token")
MAX_PAGE = 1000


@dataclass(frozen=True)
class AccessToken:
    claims: dict[str, Any]

    def belongs_to(self, client: VerifiedClient) -> bool:
        return self.claims.get("client_id") == client.client_id


@dataclass(frozen=True)
class RefreshToken:
    family: FamilyRow
    current: bool  # False: a token already rotated away

    def belongs_to(self, client: VerifiedClient) -> bool:
        return self.family.client_id == client.client_id


Found = AccessToken | RefreshToken


async def active_client(grant: Grant, methods: tuple[str, ...]) -> VerifiedClient:
    """The authenticated client, refused (401 invalid_client) while it is disabled or pending: disabling a
    resource server's client ends its introspection and its reading of the feed at once."""
    client = await authenticate(grant, methods)
    if not client.active:
        raise InvalidClientError(status_code=401, description="the client is not active")
    return client


async def introspect(grant: Grant) -> Answer:
    client = await active_client(grant, RESOURCE_SERVER_METHODS)
    token = await _presented(grant)
    if token is None or not client.row.may_introspect or not await _audience_of(grant, client, token) \
            or not await _active(grant, token):
        return Answer(200, {"active": False}, NO_STORE)
    if isinstance(token, RefreshToken):
        family = token.family
        return Answer(200, {"active": True, "token_type": "refresh_token", "client_id": family.client_id,
                            "scope": family.scope, "sub": family.user_id, "aud": family.resource,
                            "exp": int(family.expires_at.timestamp()), "iss": grant.engine.issuer}, NO_STORE)
    claims = token.claims
    body: dict[str, Any] = {"active": True, "token_type": "Bearer", **{k: claims[k] for k in (
        "scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti") if k in claims}}
    if "email" in claims:
        body["username"] = claims["email"]
    if "cnf" in claims:  # RFC 9449 §6.2: the key the token is bound to, and that it is a DPoP token
        body["cnf"], body["token_type"] = claims["cnf"], "DPoP"
    return Answer(200, body, NO_STORE)


async def revoke(grant: Grant) -> Answer:
    client = await active_client(grant, AUTH_METHODS)
    token = await _presented(grant)
    if token is not None:
        if not token.belongs_to(client):
            raise InvalidGrantError()
        await _revoke(grant, token)
    return Answer(200, {}, NO_STORE)


async def feed(grant: Grant, cursor: int, limit: int) -> Answer:
    """The next page of revocations after ``cursor``, for a resource server's client."""
    client = await active_client(grant, FEED_METHODS)
    if not client.row.may_introspect:
        raise AccessDeniedError("this client may not read the revocation feed", status_code=403)
    page = min(max(limit, 1), MAX_PAGE)
    rows = await grants.revocations_since_hot(grant.tx, cursor, grant.now, page)
    return Answer(200, {"cursor": rows[-1].id if rows else cursor, "revocations": [_entry(r) for r in rows],
                        "has_more": len(rows) == page}, (("cache-control", "no-store"),))


def _entry(row: RevocationRow) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": row.kind, "at": int(row.created_at.timestamp())}
    if row.kind == "token":
        entry["jti"] = row.subject
    elif row.kind == "family":
        entry["sid"] = row.subject
    elif row.kind == "user":
        entry["sub"] = row.subject
        # tokens with an earlier iat are dead; whole seconds, exact by oauth.cutoff
        entry["not_before"] = cutoff.cutoff(row.not_before or row.created_at)
    elif row.kind == "client":
        entry["client_id"] = row.subject
    return entry


async def _audience_of(grant: Grant, client: VerifiedClient, token: Found) -> bool:
    """RFC 7662 §4: a token is described only to its audience. An access token to a client bound to the MCP
    server it names (``resource_servers``), a refresh token to the client it was issued to; to anyone else it
    is ``active: false``, so no resource server learns what another server's or a user's tokens say."""
    if isinstance(token, RefreshToken):
        return token.belongs_to(client)
    registry = await servers.registry_hot(grant.tx)
    try:
        server = servers.resolve_in(registry, token.claims["aud"], grant.engine.issuer, include_admin_api=True,
                                    include_sign_in=True)
    except servers.UnknownResource:
        return False
    return server.id in (client.row.resource_servers or ())


async def _presented(grant: Grant) -> Found | None:
    """The token the request names (``token``, ``token_type_hint``), if it is one of ours."""
    token = grant.params.get("token")
    if token is None:
        raise InvalidRequestError()
    hint = grant.params.get("token_type_hint")
    if hint and hint not in TOKEN_TYPES:
        raise UnsupportedTokenTypeError()
    if hint != "refresh_token" and token.count(".") == 2:
        engine = grant.engine
        published = await engine.published_keys(grant.tx, grant.now)
        claims = verify_signed(published, engine.issuer, engine.verified_access_tokens, token, grant.now)
        if claims is not None:
            return AccessToken(claims)
    digest = secrets.digest(token)
    family = await grants.family_by_current_hot(grant.tx, digest)
    if family is not None:
        return RefreshToken(family, current=True)
    family = await grants.family_by_rotated_hot(grant.tx, digest)
    return RefreshToken(family, current=False) if family is not None else None


async def _active(grant: Grant, token: Found) -> bool:
    if isinstance(token, RefreshToken):
        family = token.family
        return family_live(family, token.current, await users.standing_hot(grant.tx, family.user_id), grant.now)
    claims = token.claims
    standing = await grants.access_token_standing_hot(grant.tx, jti=claims["jti"], client_id=claims["client_id"],
                                                      family_id=claims.get("sid"), user_id=user_of(claims))
    if not standing_allows(claims, standing):
        return False
    registry = await servers.registry_hot(grant.tx)
    try:  # the aud of a token we signed, not a client's resource
        servers.resolve_in(registry, claims["aud"], grant.engine.issuer, include_admin_api=True, include_sign_in=True)
    except servers.UnknownResource:
        return False
    return True


async def _revoke(grant: Grant, token: Found) -> None:
    """Revoke, and audit, only what is not revoked yet: a repeated revocation is answered alike (§2.2) and writes
    nothing, so it cannot grow the revocation feed or the audit log."""
    tx, now = grant.tx, grant.now
    if isinstance(token, RefreshToken):  # revoking a refresh token revokes its family (§2.1)
        family = token.family
        if await grants.revoke_family_hot(tx, family.id, "revoked by the client", now):
            await audit.record_hot(tx, "token.revoked", actor=family.client_id, user_id=family.user_id,
                                   client_id=family.client_id, outcome="revoked",
                                   data={"token_type": "refresh_token", "family_id": family.id})
        return
    claims = token.claims
    revoked = await grants.revoke_token_id_hot(tx, claims["jti"], dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
                                               "revoked by the client", claims["client_id"], now)
    if claims.get("sid"):  # and an access token its refresh token (§2.1: SHOULD)
        revoked = await grants.revoke_family_hot(tx, claims["sid"], "access token revoked by the client",
                                                 now) or revoked
    if revoked:
        await audit.record_hot(tx, "token.revoked", actor=claims["client_id"], client_id=claims["client_id"],
                               user_id=claims["sub"] if claims.get("sid") else None, outcome="revoked",
                               data={"token_type": "access_token", "jti": claims["jti"],
                                     "family_id": claims.get("sid")})
