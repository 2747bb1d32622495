"""The JWT bearer grant for ID-JAGs (RFC 7523 §2.1): the broker as the resource authorization server.

An enterprise IdP the operator trusts (``[[id_jag.trusted_issuers]]``) vouches that its user may use
this client with this MCP server; the broker checks the assertion (``broker.oauth.id_jag``), that the
user is one of its own and not offboarded, and its own policy, then issues an access token bound to
the one MCP server. Scopes = requested ∩ assertion ∩ policy. No refresh token: the client asks the
IdP for a fresh assertion instead, so the IdP's decision is re-made every time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from authlib.oauth2.rfc6749 import grants

from broker import audit
from broker.oauth import id_jag, provisioning, scopes, subjects
from broker.oauth.clients import SECRET_METHODS
from broker.oauth.errors import (
    InvalidGrantError,
    InvalidRequest,
    InvalidScopeError,
    InvalidTargetError,
    OAuth2Error,
    TemporarilyUnavailableError,
)
from broker.oauth.grants import _Grant
from broker.oauth.tokens import AccessTokenFacts
from broker.registry import servers
from broker.registry.resources import InvalidResource, canonical_resource
from broker.storage import grants as grant_repo

ASSERTION_KEY = "assertion_key"  # HttpRequest.context: the PreparedKey the web layer fetched


class JwtBearerGrant(_Grant, grants.BaseGrant, grants.TokenEndpointMixin):
    GRANT_TYPE = id_jag.JWT_BEARER
    TOKEN_ENDPOINT_AUTH_METHODS = [*SECRET_METHODS, "private_key_jwt"]  # confidential clients only

    def validate_token_request(self) -> None:
        client = self._client(self.GRANT_TYPE)
        self.request.client = client
        try:
            self._validate(client)
        except OAuth2Error as error:
            audit.record(self.request.db, "id_jag.rejected", actor=client.client_id, client_id=client.client_id,
                         outcome="denied", data={"error": error.error, "reason": error.description,
                                                 "issuer": self._issuer_id()})
            raise

    def _validate(self, client: Any) -> None:
        form, settings = self.request.form, self.server.settings
        assertion = form.get("assertion")
        if not assertion:
            raise InvalidRequest("the assertion parameter is required")  # RFC 7523 §2.1
        try:
            verified = id_jag.verify(assertion, prepared=self.request.http.context.get(ASSERTION_KEY),
                                     trusted=self.server.assertion_issuers, own_issuer=self.server.issuer,
                                     client_id=client.client_id, skew=settings.tokens.clock_skew,
                                     max_lifetime=settings.id_jag.max_assertion_lifetime, now=self.request.now)
        except id_jag.AssertionRejected as exc:
            if exc.unavailable:
                raise TemporarilyUnavailableError(exc.description) from None
            raise InvalidGrantError(exc.description) from None  # RFC 7523 §3.1
        self.request.assertion = verified
        server = self._server(verified)
        self.request.target = (server, self._scopes(verified, server))

    def _server(self, verified: id_jag.VerifiedAssertion) -> servers.Server:
        """The MCP server: the assertion's ``resource``, which a ``resource`` parameter may only repeat."""
        asked = self._resource_param(required=False)
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
            return servers.resolve(self.request.db, resource, self.server.issuer)
        except servers.UnknownResource as exc:
            if named is not None:
                raise InvalidGrantError("the assertion names a resource this broker does not serve") from None
            raise InvalidTargetError(str(exc)) from None

    def _scopes(self, verified: id_jag.VerifiedAssertion, server: servers.Server) -> tuple[Any, Any]:
        """(what to ask policy for, the assertion's ceiling or None when it sets none)."""
        requested = scopes.parse(self.request.form.get("scope"))
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

    def create_token_response(self) -> tuple:
        client, db, now = self.request.client, self.request.db, self.request.now
        verified: id_jag.VerifiedAssertion = self.request.assertion
        server, (asked, ceiling) = self.request.target
        user = self._user(verified)  # an unknown or offboarded subject burns nothing
        self._first_use(verified)
        subject = subjects.user_subject(db, user)
        claims = verified.claims
        login = {"acr": claims.get("acr") if isinstance(claims.get("acr"), str) else None,
                 "amr": tuple(a for a in claims.get("amr", ()) if isinstance(a, str))
                 if isinstance(claims.get("amr"), list) else ()}
        subject = subjects.with_login(subject, **login)  # the assertion's sign-in, not an older one
        granted = self._decide(subject, client.client_id, server, asked)
        if ceiling is not None:
            granted &= ceiling
        if not granted and server.scopes:
            raise InvalidScopeError("none of the requested scopes is allowed")
        auth_time = claims.get("auth_time")
        issued = self.server.access_tokens.issue(db, AccessTokenFacts(
            subject=user.id, client_id=client.client_id, server=server, scopes=granted,
            auth_time=dt.datetime.fromtimestamp(auth_time, dt.UTC) if isinstance(auth_time, int) else None,
            acr=login["acr"], email=user.email, not_before=user.not_before), now)
        self.request.issued = (user.id, server.id, issued.jti, None)
        audit.record(db, "token.issued", actor=client.client_id, user_id=user.id, client_id=client.client_id,
                     server_id=server.id, data={"grant": "jwt-bearer", "jti": issued.jti, "scopes": sorted(granted),
                                                "issuer": verified.trusted.id, "assertion_jti": verified.jti,
                                                "rule_ids": list(self.request.decision.rule_ids)})
        return self._response(issued, granted, None)  # no refresh token (ID-JAG §4.4)

    def _first_use(self, verified: id_jag.VerifiedAssertion) -> None:
        """``jti`` single use across every instance, remembered until the assertion expires (RFC 7523 §3 item 7)."""
        key = hashlib.sha256(f"id-jag\0{verified.trusted.issuer}\0{verified.jti}".encode()).hexdigest()
        skew = dt.timedelta(seconds=self.server.settings.tokens.clock_skew)
        expires = dt.datetime.fromtimestamp(int(verified.claims["exp"]), dt.UTC) + skew
        if not grant_repo.first_use_of_jti(self.request.db, key, "id-jag", expires):
            self._reject(verified, "the assertion was already used")

    def _user(self, verified: id_jag.VerifiedAssertion) -> Any:
        trusted, claims = verified.trusted, verified.claims
        user_id = provisioning.asserted_user(self.request.db, idp_id=trusted.idp or trusted.id,
                                             subject=verified.subject, claims=claims,
                                             link_by_email=trusted.link_by_email, provision=trusted.provision_users,
                                             now=self.request.now)
        if user_id is None:
            self._reject(verified, "the assertion's subject is not a user of this broker")
        try:
            return subjects.active_user(self.request.db, user_id, iat=int(claims["iat"]))
        except InvalidGrantError as error:
            self._reject(verified, error.description or "the user may no longer sign in", user_id=user_id)

    def _reject(self, verified: id_jag.VerifiedAssertion, reason: str, user_id: str | None = None) -> None:
        client_id = self.request.client.client_id
        audit.record(self.request.db, "id_jag.rejected", actor=client_id, client_id=client_id, user_id=user_id,
                     outcome="denied", data={"error": "invalid_grant", "reason": reason,
                                             "issuer": verified.trusted.id, "assertion_jti": verified.jti})
        raise InvalidGrantError(reason)

    def _issuer_id(self) -> str | None:
        verified = getattr(self.request, "assertion", None)
        return verified.trusted.id if verified is not None else None
