"""The token endpoint's grants for users and machines: authorization_code, refresh_token, client_credentials.

Each is a plain function of the request's ``Grant``: it authenticates the client, checks what the request
names, and issues. What MCP and the broker add to RFC 6749: a ``resource`` naming one registered MCP
server (RFC 8707), policy on every issuance (scopes only ever shrink on refresh), the user's standing on
every issuance, single-statement code redemption and refresh rotation, and an audit event for every token.
When the authorization asked for ``openid``, the code and every refresh of its family also return an ID
token (OIDC Core §3.1.3.3, §12.2); a sign-in's code needs no ``resource`` at the token endpoint.
"""

from __future__ import annotations

import re

from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge

from broker import audit
from broker.oauth import scopes, subjects
from broker.oauth.client_auth import SECRET_METHODS
from broker.oauth.clients import AUTH_METHODS
from broker.oauth.engine import dpop, families
from broker.oauth.engine.common import (
    NOT_ALLOWED,
    active_user,
    bound,
    client_for,
    decide,
    id_token,
    released,
    resource_param,
    server_named,
    sign_access_token,
    token_answer,
    user_subject,
)
from broker.oauth.engine.context import Answer, Grant
from broker.oauth.errors import InvalidGrantError, InvalidRequest, InvalidScopeError, InvalidTargetError
from broker.oauth.tokens import AccessTokenFacts, scope_string
from broker.registry import servers
from broker.storage import grants as grant_repo

CODE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 §4.1
MACHINE_METHODS = (*SECRET_METHODS, "private_key_jwt")


async def authorization_code(grant: Grant) -> Answer:
    client = await client_for(grant, "authorization_code", AUTH_METHODS)
    dpop.client_rule(grant, client)
    code = grant.params.get("code")
    if not code:
        raise InvalidRequest("the code parameter is required")
    row = await families.redeem(grant, code)  # burns the code whatever follows, a missing resource included
    dpop.undone_unless(dpop.bound_to, grant, row.dpop_jkt, "the authorization code")  # RFC 9449 §10: not burnt
    if row.client_id != client.client_id:
        raise InvalidGrantError("the code was issued to another client")  # RFC 6749 §4.1.3
    if grant.params.get("redirect_uri") != row.redirect_uri:
        raise InvalidGrantError("redirect_uri differs from the authorization request")  # RFC 6749 §4.1.3
    _verify_pkce(grant.params.get("code_verifier"), row.code_challenge)
    if _code_resource(grant, row.resource) != row.resource:
        raise InvalidTargetError("resource differs from the authorization request")  # RFC 8707 §2.2
    user = await active_user(grant, row.user_id, row.created_at)  # as at refresh: no code from before a revocation
    server = await _enabled_server(grant, row.resource)
    dpop.undone_unless(dpop.server_rule, grant, server)
    granted = frozenset(row.scope.split()) if row.scope else frozenset()
    refresh = await families.start(grant, client_id=client.client_id, user_id=user.id, resource=server.resource,
                                   scopes=granted, auth_time=row.auth_time, acr=row.acr, oidc_scope=row.oidc_scope,
                                   dpop_jkt=dpop.refresh_binding(grant, client))
    await grant_repo.set_code_family_hot(grant.tx, row.code_hash, refresh.family.id)  # a replay revokes it
    issued = await sign_access_token(grant, AccessTokenFacts(
        subject=user.id, client_id=client.client_id, server=server, scopes=granted, auth_time=row.auth_time,
        acr=row.acr, family_id=refresh.family.id, email=user.email, not_before=user.not_before))
    identity = await id_token(grant, user, client.client_id, row.oidc_scope, issued, nonce=row.nonce,
                              auth_time=row.auth_time, acr=row.acr)
    await audit.record_hot(grant.tx, "token.issued", actor=client.client_id, user_id=user.id,
                           client_id=client.client_id, server_id=server.id,
                           data={"grant": "authorization_code", "jti": issued.jti, "family_id": refresh.family.id,
                                 "scopes": sorted(granted), **released(row.oidc_scope, identity), **bound(issued)})
    keep_refresh = client.may_use("refresh_token")
    return token_answer(issued, granted, refresh.token if keep_refresh else None, identity)


def _code_resource(grant: Grant, stored: str) -> str:
    """The ``resource`` parameter; for a sign-in's code (``stored`` is UserInfo), which OIDC clients redeem
    without one, its own."""
    resource = resource_param(grant, required=False)
    if resource is not None:
        return resource
    sign_in = servers.userinfo(grant.engine.issuer).resource
    if stored == sign_in:
        return sign_in
    raise InvalidTargetError("the resource parameter is required")  # MCP authorization, RFC 8707


async def refresh_token(grant: Grant) -> Answer:
    """Every check that can refuse runs before the refresh token is spent, so a refused refresh (a wider scope,
    another resource, a user or server no longer there, policy) leaves it usable (RFC 6749 §5.2: an error
    changes nothing); only reuse of a rotated token revokes its family (RFC 9700 §4.14.2)."""
    client = await client_for(grant, "refresh_token", AUTH_METHODS)
    dpop.client_rule(grant, client)
    presented = grant.params.get("refresh_token")
    if not presented:
        raise InvalidRequest("the refresh_token parameter is required")
    resource = resource_param(grant, required=False)
    requested = scopes.parse(grant.params.get("scope"))
    family = await families.current(grant, presented, client.client_id)  # read, not spent
    dpop.bound_to(grant, family.dpop_jkt, "the refresh token")  # RFC 9449 §5: a public client's, to its key
    if resource is not None and resource != family.resource:
        raise InvalidTargetError("the refresh token was issued for another resource")  # RFC 8707 §2.2
    held = frozenset(family.scope.split()) if family.scope else frozenset()
    if requested is not None and not requested <= held:
        raise InvalidScopeError("scope exceeds what was granted")  # RFC 6749 §6
    user = await active_user(grant, family.user_id, family.created_at)  # offboarding ends refresh
    server = await _enabled_server(grant, family.resource, revoke_family=family.id)
    dpop.server_rule(grant, server)
    decision = await decide(grant, "refresh_token", await user_subject(grant, user), client.client_id, server,
                            requested or held)
    granted = decision.scopes & held
    if not granted:
        raise InvalidGrantError(NOT_ALLOWED)
    rotated = await families.rotate(grant, presented, client.client_id, family)  # now spent
    family = rotated.family
    if granted != held:  # policy only ever narrows a family (scopes can only shrink)
        await grant_repo.narrow_family_hot(grant.tx, family.id, scope_string(granted))
    if grant.proof is not None and family.dpop_jkt is None:
        await dpop.bind_family(grant, client, family.id)
    issued = await sign_access_token(grant, AccessTokenFacts(
        subject=user.id, client_id=client.client_id, server=server, scopes=granted, auth_time=family.auth_time,
        acr=family.acr, family_id=family.id, email=user.email, not_before=user.not_before))
    # OIDC Core §12.2: same iss, sub, aud and auth_time as at sign-in, a new iat, no nonce
    identity = await id_token(grant, user, client.client_id, family.oidc_scope, issued, nonce=None,
                              auth_time=family.auth_time, acr=family.acr)
    await audit.record_hot(grant.tx, "token.refreshed", actor=client.client_id, user_id=user.id,
                           client_id=client.client_id, server_id=server.id,
                           data={"jti": issued.jti, "family_id": family.id, "generation": family.generation,
                                 "scopes": sorted(granted), "rule_ids": list(decision.rule_ids),
                                 **released(family.oidc_scope, identity), **bound(issued)})
    return token_answer(issued, granted, rotated.token, identity)


async def client_credentials(grant: Grant) -> Answer:
    """Machine-to-machine access: the client is the subject of policy (and of the token)."""
    client = await client_for(grant, "client_credentials", MACHINE_METHODS)
    dpop.client_rule(grant, client)
    resource = resource_param(grant, required=True)
    assert resource is not None
    try:
        server = await server_named(grant, resource, include_admin_api=True)
    except servers.UnknownResource as exc:
        raise InvalidTargetError(str(exc)) from None
    dpop.server_rule(grant, server)
    requested = scopes.parse(grant.params.get("scope"))
    scopes.require_known(requested, server.scopes.keys())
    decision = await decide(grant, "client_credentials", subjects.client_subject(client), client.client_id, server,
                            requested)
    granted = decision.scopes
    issued = await sign_access_token(grant, AccessTokenFacts(subject=client.client_id, client_id=client.client_id,
                                                             server=server, scopes=granted))
    await audit.record_hot(grant.tx, "token.issued", actor=client.client_id, client_id=client.client_id,
                           server_id=server.id, data={"grant": "client_credentials", "jti": issued.jti,
                                                      "scopes": sorted(granted),
                                                      "rule_ids": list(decision.rule_ids), **bound(issued)})
    return token_answer(issued, granted)


def _verify_pkce(verifier: str | None, challenge: str) -> None:
    if not verifier:
        raise InvalidRequest("code_verifier is required (PKCE)")  # OAuth 2.1 §4.1.3
    if not CODE_VERIFIER.match(verifier):
        raise InvalidRequest("code_verifier is malformed")  # RFC 7636 §4.1
    if not compare_s256_code_challenge(verifier, challenge):
        raise InvalidGrantError("code_verifier does not match the code_challenge")  # RFC 7636 §4.6


async def _enabled_server(grant: Grant, resource: str, revoke_family: str | None = None) -> servers.Server:
    """The server a stored resource (the code's, the family's) names; a sign-in's is the broker's UserInfo."""
    try:
        return await server_named(grant, resource, include_sign_in=True)
    except servers.UnknownResource:
        if revoke_family is not None:  # a disabled server's refresh tokens stop working for good
            await grant_repo.revoke_family_hot(grant.tx, revoke_family, "MCP server disabled", grant.now)
        raise InvalidGrantError("the MCP server is no longer available") from None
