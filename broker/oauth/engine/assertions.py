"""The grants of Enterprise-Managed Authorization (docs/enterprise-managed.md).

- jwt-bearer (RFC 7523 §2.1): the broker as the resource authorization server. A trusted IdP vouches
  (an ID-JAG) that its user may use this client with this MCP server; the broker checks the assertion
  (``oauth.id_jag``), that the user is one of its own and not offboarded, and its own policy, then issues
  an access token bound to the one server. Scopes = requested ∩ assertion ∩ policy. No refresh token: the
  client asks the IdP for a fresh assertion, so the IdP's decision is re-made every time.
- token-exchange (RFC 8693): the broker as the IdP. A client that signed its user in here exchanges the ID
  token (or refresh token) it got for an ID-JAG for another authorization server (``[[id_jag.audiences]]``),
  decided by the same policy. The broker never redeems its own ID-JAGs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from broker import audit
from broker.audit import Outcome
from broker.config import AssertionAudience
from broker.oauth import id_jag, scopes, subjects
from broker.oauth.dates import instant
from broker.oauth.engine import dpop, families
from broker.oauth.engine.common import (
    active_user,
    bound,
    client_for,
    decide,
    resource_param,
    server_named,
    sign_access_token,
    token_answer,
    user_subject,
)
from broker.oauth.engine.context import NO_STORE, Answer, Grant, VerifiedClient
from broker.oauth.engine.provisioning import asserted_user
from broker.oauth.errors import (
    InvalidGrantError,
    InvalidRequest,
    InvalidScopeError,
    InvalidTargetError,
    OAuth2Error,
    TemporarilyUnavailableError,
    UnsupportedSubjectTokenTypeError,
)
from broker.oauth.id_tokens import IdTokenRejected
from broker.oauth.tokens import AccessTokenFacts, scope_string
from broker.registry import servers
from broker.registry.resources import InvalidResource, canonical_resource
from broker.storage import grants as grant_repo
from broker.storage.users import Account

CONFIDENTIAL_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # RFC 8693 §3
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
SUBJECT_TOKEN_TYPES = (ID_TOKEN_TYPE, REFRESH_TOKEN_TYPE)


# ---------------------------------------------------------------- jwt-bearer: redeeming ID-JAGs


async def jwt_bearer(grant: Grant) -> Answer:
    client = await client_for(grant, id_jag.JWT_BEARER, CONFIDENTIAL_METHODS)
    dpop.client_rule(grant, client)
    verified: id_jag.VerifiedAssertion | None = None
    try:
        verified = _verified_assertion(grant, client)
        _confirmed(grant, verified)
        server = await _assertion_server(grant, verified)
        dpop.server_rule(grant, server)
        asked, ceiling = _assertion_scopes(grant, verified, server)
    except OAuth2Error as error:
        await audit.record_hot(grant.tx, "id_jag.rejected", actor=client.client_id, client_id=client.client_id,
                               outcome=Outcome.DENIED, data={"error": error.error, "reason": error.description,
                                                       "issuer": verified.trusted.id if verified else None})
        raise
    user = await _asserted_account(grant, client, verified)  # an unknown or offboarded subject burns nothing
    await _first_use(grant, client, verified)
    claims = verified.claims
    acr = claims.get("acr") if isinstance(claims.get("acr"), str) else None
    amr = tuple(a for a in claims.get("amr", ()) if isinstance(a, str)) if isinstance(claims.get("amr"), list) else ()
    subject = subjects.with_login(await user_subject(grant, user), acr=acr, amr=amr)  # the assertion's sign-in
    decision = await decide(grant, id_jag.JWT_BEARER, subject, client.client_id, server, asked)
    granted = decision.scopes if ceiling is None else decision.scopes & ceiling
    if not granted and server.scopes:
        raise InvalidScopeError("none of the requested scopes is allowed")
    auth_time = claims.get("auth_time")
    issued = await sign_access_token(grant, AccessTokenFacts(
        subject=user.id, client_id=client.client_id, server=server, scopes=granted,
        auth_time=instant(auth_time) if isinstance(auth_time, int) else None,
        acr=acr, email=user.email, not_before=user.not_before))
    await audit.record_hot(grant.tx, "token.issued", actor=client.client_id, user_id=user.id,
                           client_id=client.client_id, server_id=server.id,
                           data={"grant": "jwt-bearer", "jti": issued.jti, "scopes": sorted(granted),
                                 "issuer": verified.trusted.id, "assertion_jti": verified.jti,
                                 "rule_ids": list(decision.rule_ids), **bound(issued)})
    return token_answer(issued, granted)  # no refresh token (ID-JAG §4.4)


def _verified_assertion(grant: Grant, client: VerifiedClient) -> id_jag.VerifiedAssertion:
    assertion = grant.params.get("assertion")
    if not assertion:
        raise InvalidRequest("the assertion parameter is required")  # RFC 7523 §2.1
    engine, settings = grant.engine, grant.engine.settings
    try:
        return id_jag.verify(assertion, prepared=grant.call.fetched.assertion_key, trusted=engine.assertion_issuers,
                             own_issuer=engine.issuer, client_id=client.client_id, skew=settings.tokens.clock_skew,
                             max_lifetime=settings.id_jag.max_assertion_lifetime, now=grant.now)
    except id_jag.AssertionRejected as exc:
        if exc.unavailable:
            raise TemporarilyUnavailableError(exc.description) from None
        raise InvalidGrantError(exc.description) from None  # RFC 7523 §3.1


def _confirmed(grant: Grant, verified: id_jag.VerifiedAssertion) -> None:
    """An ID-JAG with ``cnf`` is redeemed only with a DPoP proof by the key its ``jkt`` names (ID-JAG, DPoP section;
    RFC 9449 §6.1); any other confirmation method (mTLS ``x5t#S256``, ``jwk``) is one this broker cannot check."""
    cnf = verified.claims.get("cnf")
    if cnf is None:
        return
    if not isinstance(cnf, dict) or set(cnf) != {"jkt"} or not isinstance(cnf["jkt"], str):
        raise InvalidGrantError("the assertion's cnf names a confirmation method this broker does not support")
    dpop.bound_to(grant, cnf["jkt"], "the assertion")


async def _assertion_server(grant: Grant, verified: id_jag.VerifiedAssertion) -> servers.Server:
    """The MCP server: the assertion's ``resource``, which a ``resource`` parameter may only repeat."""
    asked = resource_param(grant, required=False)
    named = verified.claims.get("resource")
    if named is not None:
        try:
            named = canonical_resource(named)
        except InvalidResource:
            raise InvalidGrantError("the assertion's resource is not a valid resource URI") from None
        if asked is not None and asked != named:
            raise InvalidTargetError("resource differs from the assertion's resource")  # RFC 8707 §2.2
    resource = named or asked
    if resource is None:
        raise InvalidTargetError("the resource parameter is required")  # one token, one MCP server
    try:
        return await server_named(grant, resource)
    except servers.UnknownResource as exc:
        if named is not None:
            raise InvalidGrantError("the assertion names a resource this broker does not serve") from None
        raise InvalidTargetError(str(exc)) from None


def _assertion_scopes(grant: Grant, verified: id_jag.VerifiedAssertion,
                      server: servers.Server) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """(what to ask policy for, the assertion's ceiling or None when it sets none)."""
    requested = scopes.parse(grant.params.get("scope"))
    scopes.require_known(requested, server.scopes.keys())
    ceiling = None
    if "scope" in verified.claims:
        try:
            ceiling = scopes.parse(verified.claims["scope"]) or frozenset()
        except InvalidScopeError:
            raise InvalidGrantError("the assertion's scope is malformed") from None
    if requested is not None and ceiling is not None and not requested <= ceiling:
        raise InvalidScopeError("scope exceeds what the assertion grants")  # never beyond the IdP's decision
    asked = requested if requested is not None else (ceiling & set(server.scopes) if ceiling else None)
    return asked or None, ceiling


async def _asserted_account(grant: Grant, client: VerifiedClient, verified: id_jag.VerifiedAssertion) -> Account:
    trusted, claims = verified.trusted, verified.claims
    user_id = await asserted_user(grant, idp_id=trusted.idp or trusted.id, subject=verified.subject, claims=claims,
                                  link_by_email=trusted.link_by_email, provision=trusted.provision_users)
    if user_id is None:
        await _reject(grant, client, verified, "the assertion's subject is not a user of this broker")
    assert user_id is not None
    try:
        return await active_user(grant, user_id, iat=int(claims["iat"]))
    except InvalidGrantError as error:
        await _reject(grant, client, verified, error.description or "the user may no longer sign in", user_id)
        raise


async def _first_use(grant: Grant, client: VerifiedClient, verified: id_jag.VerifiedAssertion) -> None:
    """``jti`` single use across every instance, remembered until the assertion expires (RFC 7523 §3 item 7)."""
    key = hashlib.sha256(f"id-jag\0{verified.trusted.issuer}\0{verified.jti}".encode()).hexdigest()
    skew = dt.timedelta(seconds=grant.engine.settings.tokens.clock_skew)
    expiry = instant(verified.claims["exp"])
    if expiry is None or expiry > dt.datetime.max.replace(tzinfo=dt.UTC) - skew:
        await _reject(grant, client, verified, "exp is past any date")
    assert expiry is not None
    expires = expiry + skew
    if not await grant_repo.first_use_of_jti_hot(grant.tx, key, "id-jag", expires):
        await _reject(grant, client, verified, "the assertion was already used")


async def _reject(grant: Grant, client: VerifiedClient, verified: id_jag.VerifiedAssertion, reason: str,
                  user_id: str | None = None) -> None:
    await audit.record_hot(grant.tx, "id_jag.rejected", actor=client.client_id, client_id=client.client_id,
                           user_id=user_id, outcome=Outcome.DENIED,
                           data={"error": "invalid_grant", "reason": reason, "issuer": verified.trusted.id,
                                 "assertion_jti": verified.jti})
    raise InvalidGrantError(reason)


# ---------------------------------------------------------------- token exchange: issuing ID-JAGs


@dataclass(frozen=True)
class SignIn:
    """The sign-in a subject token stands for: who, when, how strongly."""

    user: Account
    token_type: str
    auth_time: dt.datetime | None
    acr: str | None


async def token_exchange(grant: Grant) -> Answer:
    client = await client_for(grant, id_jag.TOKEN_EXCHANGE, CONFIDENTIAL_METHODS)
    dpop.client_rule(grant, client)
    params = grant.params
    if params.get("requested_token_type") != id_jag.ID_JAG_TOKEN_TYPE:
        raise InvalidRequest(f"requested_token_type must be {id_jag.ID_JAG_TOKEN_TYPE}")
    if params.get("actor_token") or params.get("actor_token_type"):
        raise InvalidRequest("delegation (actor_token) is not supported")  # RFC 8693 §2.1
    token, token_type = params.get("subject_token"), params.get("subject_token_type")
    if not token or not token_type:
        raise InvalidRequest("subject_token and subject_token_type are required")  # RFC 8693 §2.1
    if token_type not in SUBJECT_TOKEN_TYPES:
        raise UnsupportedSubjectTokenTypeError("subject_token_type must be an ID token or a refresh token")
    audience = _audience(grant)
    server = await _audience_server(grant, audience)
    remote_client_id = audience.clients.get(client.client_id)
    if not remote_client_id:
        raise InvalidTargetError("this client has no client id at that authorization server")
    requested = scopes.parse(params.get("scope"))
    scopes.require_known(requested, server.scopes.keys())
    sign_in = await _sign_in(grant, token, token_type, client.client_id)
    subject = await user_subject(grant, sign_in.user)
    decision = await decide(grant, id_jag.TOKEN_EXCHANGE, subject, client.client_id, server, requested, step_up=True)
    granted, lifetime = decision.scopes, grant.engine.settings.id_jag.lifetime
    claims = _id_jag_claims(grant, audience, server, remote_client_id, sign_in, granted, lifetime)
    if sign_in.user.email:
        claims["email_verified"] = subject.claims.get("email_verified") is True  # as the IdP that signed in said
    assertion = (await grant.engine.signing_key(grant.tx, grant.now)).sign(claims, typ=id_jag.ID_JAG_TYP)
    await audit.record_hot(grant.tx, "id_jag.issued", actor=client.client_id, user_id=sign_in.user.id,
                           client_id=client.client_id, server_id=server.id,
                           data={"audience": audience.issuer, "jti": claims["jti"], "scopes": sorted(granted),
                                 "subject_token_type": sign_in.token_type, "rule_ids": list(decision.rule_ids),
                                 **({"dpop_jkt": grant.proof.jkt} if grant.proof is not None else {})})
    body: dict[str, Any] = {"issued_token_type": id_jag.ID_JAG_TOKEN_TYPE, "access_token": assertion,
                            "token_type": "N_A", "expires_in": lifetime}  # RFC 8693 §2.2.1
    if granted:
        body["scope"] = scope_string(granted)
    return Answer(200, body, NO_STORE)


def _id_jag_claims(grant: Grant, audience: AssertionAudience, server: servers.Server, remote_client_id: str,
                   sign_in: SignIn, granted: frozenset[str], lifetime: int) -> dict[str, Any]:
    iat = int(grant.now.timestamp())
    claims: dict[str, Any] = {
        "iss": grant.engine.issuer, "sub": sign_in.user.id, "aud": audience.issuer, "client_id": remote_client_id,
        "jti": str(uuid.uuid4()), "iat": iat, "exp": iat + lifetime, "resource": server.resource,
    }
    if granted:
        claims["scope"] = scope_string(granted)
    if sign_in.auth_time is not None:
        claims["auth_time"] = int(sign_in.auth_time.timestamp())
    if sign_in.acr:
        claims["acr"] = sign_in.acr
    if sign_in.user.email:
        claims["email"] = sign_in.user.email
    if grant.proof is not None:  # bound to the client's DPoP key, not silently dropped (ID-JAG, DPoP section)
        claims["cnf"] = {"jkt": grant.proof.jkt}
    return claims


def _audience(grant: Grant) -> AssertionAudience:
    issuer = grant.params.get("audience")
    if not issuer:
        raise InvalidRequest("the audience parameter is required (the resource authorization server)")
    audience = grant.engine.assertion_audiences.get(issuer)
    if audience is None:  # including this broker's own issuer: it never issues ID-JAGs for itself
        raise InvalidTargetError("this broker does not issue ID-JAGs for that audience")  # RFC 8693 §2.2.2
    return audience


async def _audience_server(grant: Grant, audience: AssertionAudience) -> servers.Server:
    resource = resource_param(grant, required=True)
    if resource not in _served(audience):
        raise InvalidTargetError("that authorization server does not serve this resource")
    try:
        return await server_named(grant, resource or "")
    except servers.UnknownResource:
        raise InvalidTargetError("the resource is not a registered MCP server") from None


async def _sign_in(grant: Grant, token: str, token_type: str, client_id: str) -> SignIn:
    """The subject token, verified: issued by this broker, to this client, for a user still allowed in."""
    if token_type == ID_TOKEN_TYPE:
        published = await grant.engine.published_keys(grant.tx, grant.now)
        try:
            claims = grant.engine.id_tokens.verify_with(published, token, client_id=client_id, now=grant.now)
        except IdTokenRejected as exc:
            raise InvalidGrantError(f"subject_token: {exc.description}") from None
        user = await active_user(grant, str(claims["sub"]), iat=int(claims["iat"]))
        auth_time = claims.get("auth_time")
        return SignIn(user, token_type, instant(auth_time) if isinstance(auth_time, int) else None,
                      claims.get("acr") if isinstance(claims.get("acr"), str) else None)
    family = await families.current(grant, token, client_id)  # not rotated: it is not redeemed
    user = await active_user(grant, family.user_id, family.created_at)
    return SignIn(user, token_type, family.auth_time, family.acr)


def _served(audience: AssertionAudience) -> set[str]:
    served = set()
    for resource in audience.resources:
        try:
            served.add(canonical_resource(resource))
        except InvalidResource:
            continue  # refused by the configuration check; never matches
    return served
