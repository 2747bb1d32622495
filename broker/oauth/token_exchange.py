"""Token exchange into ID-JAGs (RFC 8693): the broker as the enterprise IdP of the MCP extension.

A client that signed its user in here (an ID token, or a refresh token, it got from the broker)
asks for an Identity Assertion JWT Authorization Grant for another authorization server
(``[[id_jag.audiences]]``) and one of its MCP servers. The broker decides with the same policy
it uses for its own MCP servers (SPEC-NOTES 2), then signs a short-lived ID-JAG that the other
server redeems with the JWT bearer grant. The broker never redeems its own ID-JAGs
(``broker.oauth.id_jag.verify``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import grants

from broker import audit
from broker.config import AssertionAudience
from broker.oauth import id_jag, scopes, subjects
from broker.oauth.clients import SECRET_METHODS
from broker.oauth.errors import (
    InvalidGrantError,
    InvalidRequest,
    InvalidTargetError,
    UnsupportedSubjectTokenTypeError,
)
from broker.oauth.grants import _Grant
from broker.oauth.id_tokens import IdTokenRejected
from broker.oauth.tokens import scope_string
from broker.registry import servers
from broker.registry.resources import InvalidResource, canonical_resource
from broker.storage.models import User
from broker.storage.users import Account

ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # RFC 8693 §3
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
SUBJECT_TOKEN_TYPES = (ID_TOKEN_TYPE, REFRESH_TOKEN_TYPE)


@dataclass(frozen=True)
class SignIn:
    """The sign-in a subject token stands for: who, when, how strongly."""

    user: User | Account
    token_type: str
    auth_time: dt.datetime | None
    acr: str | None


class TokenExchangeGrant(_Grant, grants.BaseGrant, grants.TokenEndpointMixin):
    GRANT_TYPE = id_jag.TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = [*SECRET_METHODS, "private_key_jwt"]  # client authentication is mandatory
    STEP_UP = True

    def validate_token_request(self) -> None:
        client = self._client(self.GRANT_TYPE)
        form = self.request.form
        if form.get("requested_token_type") != id_jag.ID_JAG_TOKEN_TYPE:
            raise InvalidRequest(f"requested_token_type must be {id_jag.ID_JAG_TOKEN_TYPE}")
        if form.get("actor_token") or form.get("actor_token_type"):
            raise InvalidRequest("delegation (actor_token) is not supported")  # RFC 8693 §2.1
        token, token_type = form.get("subject_token"), form.get("subject_token_type")
        if not token or not token_type:
            raise InvalidRequest("subject_token and subject_token_type are required")  # RFC 8693 §2.1
        if token_type not in SUBJECT_TOKEN_TYPES:
            raise UnsupportedSubjectTokenTypeError("subject_token_type must be an ID token or a refresh token")
        audience = self._audience()
        server = self._server(audience)
        remote_client_id = audience.clients.get(client.client_id)
        if not remote_client_id:
            raise InvalidTargetError("this client has no client id at that authorization server")
        requested = scopes.parse(form.get("scope"))
        scopes.require_known(requested, server.scopes.keys())
        self.request.client = client
        self.request.target = (audience, server, remote_client_id, requested)
        self.request.sign_in = self._sign_in(token, token_type, client.client_id)

    def _audience(self) -> AssertionAudience:
        issuer = self.request.form.get("audience")
        if not issuer:
            raise InvalidRequest("the audience parameter is required (the resource authorization server)")
        audience = self.server.assertion_audiences.get(issuer)
        if audience is None:  # including this broker's own issuer: it never issues ID-JAGs for itself
            raise InvalidTargetError("this broker does not issue ID-JAGs for that audience")  # RFC 8693 §2.2.2
        return audience

    def _server(self, audience: AssertionAudience) -> servers.Server:
        resource = self._resource_param(required=True)
        if resource not in _served(audience):
            raise InvalidTargetError("that authorization server does not serve this resource")
        try:
            return servers.resolve(self.request.db, resource, self.server.issuer)
        except servers.UnknownResource:
            raise InvalidTargetError("the resource is not a registered MCP server") from None

    def _sign_in(self, token: str, token_type: str, client_id: str) -> SignIn:
        """The subject token, verified: issued by this broker, to this client, for a user still allowed in."""
        db, now = self.request.db, self.request.now
        if token_type == ID_TOKEN_TYPE:
            try:
                claims = self.server.id_tokens.verify(db, token, client_id=client_id, now=now,
                                                      jwks_grace=self.server.jwks_grace)
            except IdTokenRejected as exc:
                raise InvalidGrantError(f"subject_token: {exc.description}") from None
            user = subjects.active_user(db, str(claims["sub"]), iat=int(claims["iat"]))
            auth_time = claims.get("auth_time")
            return SignIn(user, token_type, dt.datetime.fromtimestamp(auth_time, dt.UTC)
                          if isinstance(auth_time, int) else None,
                          claims.get("acr") if isinstance(claims.get("acr"), str) else None)
        family = self.server.refresh_tokens.current(db, token, client_id, now)  # not rotated: it is not redeemed
        user = subjects.active_user(db, family.user_id, family.created_at)
        return SignIn(user, token_type, family.auth_time, family.acr)

    def create_token_response(self) -> tuple:
        audience, server, remote_client_id, requested = self.request.target
        client, db, now, sign_in = self.request.client, self.request.db, self.request.now, self.request.sign_in
        subject = subjects.user_subject(db, sign_in.user)
        granted = self._decide(subject, client.client_id, server, requested)
        lifetime = self.server.settings.id_jag.lifetime
        jti, iat = str(uuid.uuid4()), int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.server.issuer, "sub": sign_in.user.id, "aud": audience.issuer,
            "client_id": remote_client_id, "jti": jti, "iat": iat, "exp": iat + lifetime,
            "resource": server.resource,
        }
        if granted:
            claims["scope"] = scope_string(granted)
        if sign_in.auth_time is not None:
            claims["auth_time"] = int(sign_in.auth_time.timestamp())
        if sign_in.acr:
            claims["acr"] = sign_in.acr
        if sign_in.user.email:
            claims["email"] = sign_in.user.email
            claims["email_verified"] = subject.claims.get("email_verified") is True  # as the IdP that signed in said
        assertion = self.server.keyring.active(db, now).sign(claims, typ=id_jag.ID_JAG_TYP)
        audit.record(db, "id_jag.issued", actor=client.client_id, user_id=sign_in.user.id, client_id=client.client_id,
                     server_id=server.id, data={"audience": audience.issuer, "jti": jti, "scopes": sorted(granted),
                                                "subject_token_type": sign_in.token_type,
                                                "rule_ids": list(self.request.decision.rule_ids)})
        body: dict[str, Any] = {"issued_token_type": id_jag.ID_JAG_TOKEN_TYPE, "access_token": assertion,
                                "token_type": "N_A", "expires_in": lifetime}  # RFC 8693 §2.2.1
        if granted:
            body["scope"] = scope_string(granted)
        return 200, body, self.TOKEN_RESPONSE_HEADER


def _served(audience: AssertionAudience) -> set[str]:
    served = set()
    for resource in audience.resources:
        try:
            served.add(canonical_resource(resource))
        except InvalidResource:
            continue  # refused by the configuration check; never matches
    return served
