"""What every grant does: the resource it names, the user it is for, policy's decision, the signed token."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from broker import audit
from broker.audit import Outcome
from broker.oauth import oidc_claims, subjects
from broker.oauth.engine.clients import authenticate
from broker.oauth.engine.context import NO_STORE, Answer, Grant, VerifiedClient
from broker.oauth.errors import (
    InsufficientUserAuthenticationError,
    InvalidGrantError,
    InvalidTargetError,
    UnauthorizedClientError,
)
from broker.oauth.tokens import AccessTokenFacts, IssuedAccessToken, scope_string
from broker.policy import Decision, Subject
from broker.registry import servers
from broker.registry.resources import InvalidResource, canonical_resource
from broker.storage import users
from broker.storage.users import Account

NOT_ALLOWED = "access to this MCP server is not allowed"  # never say which rule denied


async def client_for(grant: Grant, grant_type: str, methods: Sequence[str]) -> VerifiedClient:
    """The authenticated client, if it is active and registered for ``grant_type``."""
    client = await authenticate(grant, methods)
    if not client.active:
        raise UnauthorizedClientError("the client is not active")
    if not client.may_use(grant_type):
        raise UnauthorizedClientError(f"the client may not use grant_type {grant_type}")
    return client


def resource_param(grant: Grant, required: bool) -> str | None:
    """The ``resource`` parameter, canonical (RFC 8707); ``invalid_target`` when it is malformed or missing."""
    raw = grant.params.get("resource")
    if raw is None:
        if required:
            raise InvalidTargetError("the resource parameter is required")  # MCP authorization, RFC 8707
        return None
    try:
        return canonical_resource(raw)
    except InvalidResource as exc:
        raise InvalidTargetError(str(exc)) from None


async def server_named(grant: Grant, resource: str, **include: bool) -> servers.Server:
    """The enabled server a resource names (``servers.resolve``), from the cached registry."""
    registry = await servers.registry_hot(grant.tx)
    return servers.resolve_in(registry, resource, grant.engine.issuer, **include)


async def active_user(grant: Grant, user_id: str, issued_at: dt.datetime | None = None, *,
                      iat: int | None = None) -> Account:
    """The user's account, if they may still receive tokens (``subjects.active_user``); their groups are read
    with it, for ``user_subject``."""
    member = await users.member_hot(grant.tx, user_id)
    account = subjects.usable(member.account if member is not None else None, issued_at, iat)
    assert member is not None
    grant.groups[account.id] = member.group_names
    return account


async def user_subject(grant: Grant, account: Account) -> Subject:
    """The policy subject: the user, their groups and the claims of their latest sign-in."""
    groups = grant.groups.get(account.id)
    if groups is None:
        groups = await users.group_names_hot(grant.tx, account.id)
    return subjects.subject_of(account.id, account.email, account.login_idp_id, account.login_claims, groups)


async def decide(grant: Grant, grant_type: str, subject: Subject, client_id: str, server: servers.Server,
                 requested: frozenset[str] | None, step_up: bool = False) -> Decision:
    """Policy's decision for this grant; a denial is audited and refused (never saying which rule denied)."""
    policy = await grant.engine.policy.current_hot(grant.tx)
    access = subjects.access_request(subject, client_id, server, requested, grant.now)
    decision = policy.decide(access)
    if decision.allowed:
        return decision
    if step_up and getattr(policy, "needs_step_up", lambda _: False)(access):
        await audit.record_hot(grant.tx, "authorization.step_up_required", actor=client_id, client_id=client_id,
                               user_id=subject.id, server_id=server.id, outcome=Outcome.DENIED,
                               data={"grant": grant_type})
        raise InsufficientUserAuthenticationError("sign in again with a stronger method")  # RFC 9470 §3
    await audit.record_hot(grant.tx, "authorization.denied", actor=client_id, client_id=client_id,
                           user_id=subject.id if subject.kind == "user" else None, server_id=server.id,
                           outcome=Outcome.DENIED, data={"grant": grant_type, "rule_ids": list(decision.rule_ids),
                                                   "reason": decision.reason})
    raise InvalidGrantError(NOT_ALLOWED)


async def sign_access_token(grant: Grant, facts: AccessTokenFacts) -> IssuedAccessToken:
    """The access token; bound to the request's DPoP key when it sent a proof (RFC 9449 §5)."""
    if grant.proof is not None:
        facts = dataclasses.replace(facts, jkt=grant.proof.jkt)
    return grant.engine.access_tokens.sign(await grant.engine.signing_key(grant.tx, grant.now), facts, grant.now)


async def id_token(grant: Grant, user: Account, client_id: str, oidc_scope: str | None, issued: IssuedAccessToken,
                   *, nonce: str | None, auth_time: dt.datetime | None, acr: str | None) -> str | None:
    """An ID token when the authorization asked for ``openid`` (OIDC Core §3.1.2.1), else None."""
    oidc = oidc_claims.loaded(oidc_scope)
    if "openid" not in oidc:
        return None
    return grant.engine.id_tokens.sign(await grant.engine.signing_key(grant.tx, grant.now), user=user,
                                       client_id=client_id, user_claims=oidc_claims.account_claims(user, oidc),
                                       nonce=nonce, auth_time=auth_time, acr=acr, access_token=issued.token,
                                       now=grant.now)


def bound(issued: IssuedAccessToken) -> dict[str, Any]:
    """Audit data: the DPoP key a token is bound to (its thumbprint), when it is."""
    return {"dpop_jkt": issued.jkt} if issued.jkt else {}


def released(oidc_scope: str | None, id_token_issued: str | None) -> dict[str, Any]:
    """Audit data: which OIDC scopes' claims an ID token released (never the token itself)."""
    return {"id_token_scopes": sorted(oidc_claims.loaded(oidc_scope))} if id_token_issued else {}


def token_answer(issued: IssuedAccessToken, granted: frozenset[str], refresh_token: str | None = None,
                 id_token_issued: str | None = None) -> Answer:
    body: dict[str, Any] = {"access_token": issued.token, "token_type": issued.token_type,
                            "expires_in": issued.expires_in, "scope": scope_string(granted)}
    if refresh_token:
        body["refresh_token"] = refresh_token
    if id_token_issued:
        body["id_token"] = id_token_issued  # OIDC Core §3.1.3.3
    return Answer(200, body, NO_STORE)
