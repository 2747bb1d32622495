"""The token endpoint's grants, on authlib's grant classes.

Steps every grant shares (client authentication, the dispatch on grant_type, the response
headers) stay in authlib's dispatcher; each grant here adds what MCP and the broker require:
a ``resource`` naming one registered MCP server, policy evaluated on every issuance (scopes
can only shrink on refresh), user status checked on every issuance, and single-statement
code redemption and refresh rotation. When the authorization asked for ``openid``, the code and
every refresh of its family also return an ID token (OIDC Core §3.1.3.3, §12.2); a sign-in's code
(no ``resource`` at ``/authorize``) needs no ``resource`` at the token endpoint either.
"""

from __future__ import annotations

import re
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge

from broker import audit
from broker.oauth import codes, oidc_claims, scopes, subjects
from broker.oauth.clients import AUTH_METHODS, SECRET_METHODS
from broker.oauth.errors import (
    InsufficientUserAuthenticationError,
    InvalidGrantError,
    InvalidRequest,
    InvalidScopeError,
    InvalidTargetError,
    UnauthorizedClientError,
)
from broker.oauth.tokens import AccessTokenFacts, scope_string
from broker.registry import servers
from broker.registry.resources import InvalidResource, canonical_resource
from broker.storage import grants as grant_repo

CODE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 §4.1
NOT_ALLOWED = "access to this MCP server is not allowed"  # never say which rule denied


class _Grant:
    """Shared helpers; ``self.server`` is the ``BrokerAuthorizationServer``, ``self.request`` a ``BrokerRequest``."""

    request: Any
    server: Any
    STEP_UP = False  # whether a denial a stronger sign-in would lift says so (insufficient_user_authentication)

    def _client(self, grant_type: str) -> Any:
        client = self.authenticate_token_endpoint_client()  # type: ignore[attr-defined]
        if not client.active:
            raise UnauthorizedClientError("the client is not active")
        if not client.check_grant_type(grant_type):
            raise UnauthorizedClientError(f"the client may not use grant_type {grant_type}")
        return client

    def _resource_param(self, required: bool) -> str | None:
        raw = self.request.form.get("resource")
        if raw is None:
            if required:
                raise InvalidTargetError("the resource parameter is required")  # MCP authorization, RFC 8707
            return None
        try:
            return canonical_resource(raw)
        except InvalidResource as exc:
            raise InvalidTargetError(str(exc)) from None

    def _response(self, issued: Any, granted: frozenset[str], refresh_token: str | None,
                  id_token: str | None = None) -> tuple:
        body: dict[str, Any] = {"access_token": issued.token, "token_type": "Bearer",
                                "expires_in": issued.expires_in, "scope": scope_string(granted)}
        if refresh_token:
            body["refresh_token"] = refresh_token
        if id_token:
            body["id_token"] = id_token  # OIDC Core §3.1.3.3
        return 200, body, self.TOKEN_RESPONSE_HEADER  # type: ignore[attr-defined]

    def _id_token(self, user: Any, client_id: str, oidc_scope: str | None, issued: Any, *, nonce: str | None,
                  auth_time: Any, acr: str | None) -> str | None:
        """An ID token when the authorization asked for ``openid`` (OIDC Core §3.1.2.1), else None."""
        oidc = oidc_claims.loaded(oidc_scope)
        if "openid" not in oidc:
            return None
        return self.server.id_tokens.issue(self.request.db, user=user, client_id=client_id, oidc_scopes=oidc,
                                           nonce=nonce, auth_time=auth_time, acr=acr, access_token=issued.token,
                                           now=self.request.now)

    def _decide(self, subject: Any, client_id: str, server: Any, requested: frozenset[str] | None) -> frozenset[str]:
        policy = self.server.policy.current(self.request.db)
        access = subjects.access_request(subject, client_id, server, requested, self.request.now)
        decision = policy.decide(access)
        self.request.decision = decision
        if not decision.allowed:
            if self.STEP_UP and getattr(policy, "needs_step_up", lambda _: False)(access):
                audit.record(self.request.db, "authorization.step_up_required", actor=client_id,
                             client_id=client_id, user_id=subject.id, server_id=server.id, outcome="denied",
                             data={"grant": self.GRANT_TYPE})  # type: ignore[attr-defined]
                raise InsufficientUserAuthenticationError("sign in again with a stronger method")  # RFC 9470 §3
            audit.record(self.request.db, "authorization.denied", actor=client_id, client_id=client_id,
                         user_id=subject.id if subject.kind == "user" else None, server_id=server.id,
                         outcome="denied", data={"grant": self.GRANT_TYPE, "rule_ids": list(decision.rule_ids),
                                                 "reason": decision.reason})  # type: ignore[attr-defined]
            raise InvalidGrantError(NOT_ALLOWED)
        return decision.scopes


class AuthorizationCodeGrant(_Grant, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_token_request(self) -> None:
        client = self._client(self.GRANT_TYPE)
        code = self.request.form.get("code")
        if not code:
            raise InvalidRequest("the code parameter is required")
        resource = self._code_resource(code)
        row = codes.redeem(self.request.db, code, self.request.now)  # burns the code whatever follows
        if row.client_id != client.client_id:
            raise InvalidGrantError("the code was issued to another client")  # RFC 6749 §4.1.3
        if self.request.form.get("redirect_uri") != row.redirect_uri:
            raise InvalidGrantError("redirect_uri differs from the authorization request")  # RFC 6749 §4.1.3
        _verify_pkce(self.request.form.get("code_verifier"), row.code_challenge)
        if resource != row.resource:
            raise InvalidTargetError("resource differs from the authorization request")  # RFC 8707 §2.2
        self.request.client = client
        self.request.authorization_code = row

    def _code_resource(self, code: str) -> str:
        """The ``resource`` parameter; for a sign-in's code, which OIDC clients redeem without one, its own."""
        resource = self._resource_param(required=False)
        if resource is not None:
            return resource
        sign_in = servers.userinfo(self.server.issuer).resource
        if codes.resource_of(self.request.db, code) == sign_in:  # read only: the code is not spent here
            return sign_in
        raise InvalidTargetError("the resource parameter is required")  # MCP authorization, RFC 8707

    def create_token_response(self) -> tuple:
        row, client, db, now = self.request.authorization_code, self.request.client, self.request.db, self.request.now
        user = subjects.active_user(db, row.user_id, row.created_at)  # as at refresh: no code from before a revocation
        server = _enabled_server(db, row.resource, self.server.issuer)
        granted = frozenset(row.scope.split()) if row.scope else frozenset()
        refresh = self.server.refresh_tokens.start(db, client_id=client.client_id, user_id=user.id,
                                                   resource=server.resource, scopes=granted,
                                                   auth_time=row.auth_time, acr=row.acr, now=now,
                                                   oidc_scope=row.oidc_scope)
        grant_repo.set_code_family(db, row.code_hash, refresh.family.id)  # a replay revokes what it produced
        issued = self.server.access_tokens.issue(db, AccessTokenFacts(
            subject=user.id, client_id=client.client_id, server=server, scopes=granted, auth_time=row.auth_time,
            acr=row.acr, family_id=refresh.family.id, email=user.email, not_before=user.not_before), now)
        id_token = self._id_token(user, client.client_id, row.oidc_scope, issued, nonce=row.nonce,
                                  auth_time=row.auth_time, acr=row.acr)
        self.request.issued = (user.id, server.id, issued.jti, refresh.family.id)
        audit.record(db, "token.issued", actor=client.client_id, user_id=user.id, client_id=client.client_id,
                     server_id=server.id, data={"grant": "authorization_code", "jti": issued.jti,
                                                "family_id": refresh.family.id, "scopes": sorted(granted),
                                                **_released(row.oidc_scope, id_token)})
        keep_refresh = client.check_grant_type("refresh_token")
        return self._response(issued, granted, refresh.token if keep_refresh else None, id_token)


class RefreshTokenGrant(_Grant, grants.RefreshTokenGrant):
    """Every check that can refuse runs before the refresh token is spent: a refused refresh (a wider scope,
    another resource, a user or server no longer there, policy) leaves the token usable, as RFC 6749 §5.2 errors
    change nothing. Only reuse of a rotated token revokes its family (RFC 9700 §4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_token_request(self) -> None:
        client = self._client(self.GRANT_TYPE)
        presented = self.request.form.get("refresh_token")
        if not presented:
            raise InvalidRequest("the refresh_token parameter is required")
        resource = self._resource_param(required=False)
        requested = scopes.parse(self.request.form.get("scope"))
        db, now = self.request.db, self.request.now
        family = self.server.refresh_tokens.current(db, presented, client.client_id, now)  # read, not spent
        if resource is not None and resource != family.resource:
            raise InvalidTargetError("the refresh token was issued for another resource")  # RFC 8707 §2.2
        held = frozenset(family.scope.split()) if family.scope else frozenset()
        if requested is not None and not requested <= held:
            raise InvalidScopeError("scope exceeds what was granted")  # RFC 6749 §6
        user = subjects.active_user(db, family.user_id, family.created_at)  # offboarding ends refresh
        server = _enabled_server(db, family.resource, self.server.issuer, revoke=(family.id, self))
        granted = self._decide(subjects.user_subject(db, user), client.client_id, server, requested or held) & held
        if not granted:
            raise InvalidGrantError(NOT_ALLOWED)
        self.request.client = client
        self.request.refresh_token = self.server.refresh_tokens.rotate(db, presented, client.client_id, now)
        self.request.target = (user, server, held, granted)

    def create_token_response(self) -> tuple:
        rotated, client, db, now = self.request.refresh_token, self.request.client, self.request.db, self.request.now
        family = rotated.family
        user, server, held, granted = self.request.target
        if granted != held:  # policy only ever narrows a family (scopes can only shrink)
            grant_repo.narrow_family(db, family.id, scope_string(granted))
        issued = self.server.access_tokens.issue(db, AccessTokenFacts(
            subject=user.id, client_id=client.client_id, server=server, scopes=granted, auth_time=family.auth_time,
            acr=family.acr, family_id=family.id, email=user.email, not_before=user.not_before), now)
        # OIDC Core §12.2: same iss, sub, aud and auth_time as at sign-in, a new iat, no nonce
        id_token = self._id_token(user, client.client_id, family.oidc_scope, issued, nonce=None,
                                  auth_time=family.auth_time, acr=family.acr)
        self.request.issued = (user.id, server.id, issued.jti, family.id)
        audit.record(db, "token.refreshed", actor=client.client_id, user_id=user.id, client_id=client.client_id,
                     server_id=server.id, data={"jti": issued.jti, "family_id": family.id,
                                                "generation": family.generation, "scopes": sorted(granted),
                                                "rule_ids": list(self.request.decision.rule_ids),
                                                **_released(family.oidc_scope, id_token)})
        return self._response(issued, granted, rotated.token, id_token)


class ClientCredentialsGrant(_Grant, grants.ClientCredentialsGrant):
    """Machine-to-machine access: the client is the subject of policy (and of the token)."""

    TOKEN_ENDPOINT_AUTH_METHODS = [*SECRET_METHODS, "private_key_jwt"]

    def validate_token_request(self) -> None:
        client = self._client(self.GRANT_TYPE)
        resource = self._resource_param(required=True)
        assert resource is not None
        try:
            server = servers.resolve(self.request.db, resource, self.server.issuer, include_admin_api=True)
        except servers.UnknownResource as exc:
            raise InvalidTargetError(str(exc)) from None
        requested = scopes.parse(self.request.form.get("scope"))
        scopes.require_known(requested, server.scopes.keys())
        self.request.client = client
        self.request.target = (server, requested)

    def create_token_response(self) -> tuple:
        server, requested = self.request.target
        client, db = self.request.client, self.request.db
        granted = self._decide(subjects.client_subject(client), client.client_id, server, requested)
        issued = self.server.access_tokens.issue(db, AccessTokenFacts(
            subject=client.client_id, client_id=client.client_id, server=server, scopes=granted), self.request.now)
        self.request.issued = (None, server.id, issued.jti, None)
        audit.record(db, "token.issued", actor=client.client_id, client_id=client.client_id, server_id=server.id,
                     data={"grant": "client_credentials", "jti": issued.jti, "scopes": sorted(granted),
                           "rule_ids": list(self.request.decision.rule_ids)})
        return self._response(issued, granted, None)


def _verify_pkce(verifier: str | None, challenge: str) -> None:
    if not verifier:
        raise InvalidRequest("code_verifier is required (PKCE)")  # OAuth 2.1 §4.1.3
    if not CODE_VERIFIER.match(verifier):
        raise InvalidRequest("code_verifier is malformed")  # RFC 7636 §4.1
    if not compare_s256_code_challenge(verifier, challenge):
        raise InvalidGrantError("code_verifier does not match the code_challenge")  # RFC 7636 §4.6


def _released(oidc_scope: str | None, id_token: str | None) -> dict[str, Any]:
    """Audit data: which OIDC scopes' claims an ID token released (never the token itself)."""
    return {"id_token_scopes": sorted(oidc_claims.loaded(oidc_scope))} if id_token else {}


def _enabled_server(db: Any, resource: str, issuer: str, revoke: tuple[str, Any] | None = None) -> servers.Server:
    try:  # a stored resource (the code's, the family's): a sign-in's is the broker's own UserInfo endpoint
        return servers.resolve(db, resource, issuer, include_sign_in=True)
    except servers.UnknownResource:
        if revoke is not None:  # a disabled server's refresh tokens stop working for good
            family_id, grant = revoke
            grant.server.refresh_tokens.revoke(db, family_id, "MCP server disabled", grant.request.now)
        raise InvalidGrantError("the MCP server is no longer available") from None
