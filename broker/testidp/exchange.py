"""Token exchange into ID-JAGs (RFC 8693): the test IdP as the enterprise IdP of Enterprise-Managed
Authorization (MCP extension ``io.modelcontextprotocol/enterprise-managed-authorization``,
draft-ietf-oauth-identity-assertion-authz-grant).

A client that logged a user in here trades the user's ID token (or its refresh token) for an
ID-JAG: a short-lived JWT, ``typ`` ``oauth-id-jag+jwt``, that the client presents to the
authorization server named in ``audience`` with the JWT bearer grant (RFC 7523). The grant is
registered only when ``testidp.id_jag_audiences`` is set; the dispatcher has already refused
repeated parameters (so one ``audience`` and one ``resource``, as an ID-JAG carries) and
authenticated the client. The test IdP has no policy: any configured user may get ID-JAGs for
any configured audience and any well-formed resource.

A subject token that fails verification is ``invalid_grant``. RFC 8693 §2.2.2 says
``invalid_request``, but this token endpoint reports every unusable grant (code, refresh token,
assertion) as ``invalid_grant``, and the broker's side of the extension does the same.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from broker.config import TestIdpUser, is_loopback_host
from broker.testidp import scopes
from broker.testidp.directory import Directory
from broker.testidp.errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidToken, OAuthError
from broker.testidp.grants import TokenRequest
from broker.testidp.jwts import ID_TOKEN_TYP, KeySource, verify_own_jwt
from broker.testidp.params import ProviderParams
from broker.testidp.sealed import RefreshGrant, Sealer

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # RFC 8693 §2.1
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # RFC 8693 §3
REFRESH_TOKEN = "urn:ietf:params:oauth:token-type:refresh_token"  # RFC 8693 §3
ID_JAG_TYP = "oauth-id-jag+jwt"
ID_TOKEN_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "auth_time"]
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")  # RFC 6749 §3.3 scope-token
_LOGIN_ONLY = (scopes.OPENID, scopes.OFFLINE_ACCESS)  # about the login here, meaningless at the resource AS

log = logging.getLogger("broker.testidp")


class InvalidTarget(OAuthError):
    error = "invalid_target"  # RFC 8693 §2.2.2


class UnsupportedTokenType(OAuthError):
    error = "unsupported_token_type"  # RFC 7009 §2.2.1's code; RFC 8693 defines none for an unknown type


@dataclass(frozen=True)
class VerifiedSubject:
    """The user a verified subject token stands for, and when they logged in here."""

    user: TestIdpUser
    auth_time: int


@dataclass(frozen=True)
class IdJagTarget:
    """Where an ID-JAG goes (``audience``), for which MCP server (``resource``), with which scope."""

    audience: str
    resource: str
    scope: tuple[str, ...]


class IdJagExchange:
    def __init__(self, issuer: str, directory: Directory, sealer: Sealer, keys: KeySource,
                 jwks: Callable[[Session], dict[str, Any]], audiences: list[str], lifetime: int):
        self.issuer = issuer
        self.directory = directory
        self.sealer = sealer
        self.keys = keys
        self.jwks = jwks
        self.audiences = frozenset(audiences)
        self.lifetime = lifetime

    def exchange(self, request: TokenRequest) -> dict[str, Any]:
        """RFC 8693 §2.1 in, §2.2.1 out: an ID-JAG for a verified subject token; no refresh token."""
        target = self._target(request.params)
        subject = self._subject(request)
        claims = self._claims(request, subject, target)
        id_jag = self.keys.active(request.session).sign(claims, typ=ID_JAG_TYP)
        log.info("test IdP ID-JAG issued", extra={"user": subject.user.username,
                                                  "client_id": request.client.client_id, "audience": target.audience,
                                                  "resource": target.resource, "jti": claims["jti"]})
        body: dict[str, Any] = {"issued_token_type": ID_JAG, "access_token": id_jag,
                                "token_type": "N_A",  # RFC 8693 §2.2.1: not an access token
                                "expires_in": self.lifetime}
        if target.scope:
            body["scope"] = " ".join(target.scope)  # RFC 8693 §2.2.1: required when it differs from the request
        return body

    def _target(self, params: ProviderParams) -> IdJagTarget:
        if params.get("actor_token") is not None or params.get("actor_token_type") is not None:
            raise InvalidRequest("actor_token is not supported")  # RFC 8693 §2.1: no delegation here
        if params.require("requested_token_type") != ID_JAG:
            raise InvalidRequest(f"requested_token_type must be {ID_JAG}")  # ID-JAG draft: required, this value
        audience = params.require("audience")  # ID-JAG draft: the resource AS's issuer, required
        if audience not in self.audiences:
            raise InvalidTarget("ID-JAGs are not issued for this audience")  # RFC 8693 §2.2.2
        return IdJagTarget(audience, _resource(params.get("resource")), _scope(params.get("scope")))

    def _subject(self, request: TokenRequest) -> VerifiedSubject:
        unverified_token = request.params.require("subject_token")  # RFC 8693 §2.1: required
        token_type = request.params.require("subject_token_type")  # RFC 8693 §2.1: required
        if token_type == ID_TOKEN:
            return self._id_token(request, unverified_token)
        if token_type == REFRESH_TOKEN:
            return self._refresh_token(request, unverified_token)
        raise UnsupportedTokenType("subject_token_type must be an id_token or a refresh_token")

    def _id_token(self, request: TokenRequest, unverified_token: str) -> VerifiedSubject:
        client_id = request.client.client_id
        try:
            claims = verify_own_jwt(unverified_token, typ=ID_TOKEN_TYP,  # RFC 8725 §3.11: no access tokens
                                    jwks=self.jwks(request.session), issuer=self.issuer,
                                    audience=client_id,  # ID-JAG draft: issued to the client exchanging it
                                    required=ID_TOKEN_CLAIMS, now=request.now)
        except InvalidToken as exc:  # invalid_grant, not RFC 8693 §2.2.2's invalid_request: see the module docstring
            raise InvalidGrant(f"subject_token: {exc.description}") from None
        if claims.get("azp", client_id) != client_id:
            raise InvalidGrant("subject_token: issued to another client")  # OIDC Core §2: azp is the client
        auth_time = claims["auth_time"]
        if not isinstance(auth_time, int) or isinstance(auth_time, bool):
            raise InvalidGrant("subject_token: auth_time must be an integer")  # OIDC Core §2: NumericDate
        return self._verified(str(claims["sub"]), auth_time)

    def _refresh_token(self, request: TokenRequest, unverified_token: str) -> VerifiedSubject:
        grant: RefreshGrant = self.sealer.open_refresh(unverified_token).value  # InvalidGrant unless ours
        if request.now >= grant.exp:
            raise InvalidGrant("subject_token: refresh token expired")
        if grant.client_id != request.client.client_id:
            raise InvalidGrant("subject_token: refresh token was issued to another client")  # RFC 6749 §6
        return self._verified(grant.username, grant.auth_time)

    def _verified(self, username: str, auth_time: int) -> VerifiedSubject:
        user = self.directory.user(username)
        if user is None:
            raise InvalidGrant("the user no longer exists")  # removed from the configuration since login
        return VerifiedSubject(user, auth_time)

    def _claims(self, request: TokenRequest, subject: VerifiedSubject, target: IdJagTarget) -> dict[str, Any]:
        """ID-JAG claims (the ID-JAG draft): who, for which client there, which server, until when."""
        client = request.client
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": subject.user.username,  # the same sub as our ID tokens
            "aud": target.audience, "client_id": client.resource_client_id or client.client_id,
            "jti": uuid.uuid4().hex, "iat": request.now, "exp": request.now + self.lifetime,
            "resource": target.resource, "auth_time": subject.auth_time, "amr": ["pwd"],
            "email": subject.user.email, "email_verified": True}
        if target.scope:
            claims["scope"] = " ".join(target.scope)
        return claims


def _resource(raw: str | None) -> str:
    """The MCP server the ID-JAG is for: https, or http on loopback (development), without fragment."""
    if raw is None:
        raise InvalidTarget("the resource parameter is required")  # the MCP extension requires it
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise InvalidTarget("resource must be an absolute URI")  # RFC 8707 §2
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise InvalidTarget("resource is not a valid URI") from None
    if parts.fragment or "#" in raw:
        raise InvalidTarget("resource must not contain a fragment")  # RFC 8707 §2
    https = parts.scheme == "https" and bool(parts.hostname)
    loopback = parts.scheme == "http" and is_loopback_host(parts.hostname)
    if not (https or loopback):
        raise InvalidTarget("resource must be an https URL (http only on loopback)")  # RFC 8707 §2: absolute
    return raw


def _scope(raw: str | None) -> tuple[str, ...]:
    """Requested scopes for the resource AS, passed through without ``openid`` and ``offline_access``."""
    if raw is None:
        return ()
    tokens = tuple(dict.fromkeys(t for t in raw.split(" ") if t))
    if not tokens or not all(_SCOPE_TOKEN.match(t) for t in tokens):
        raise InvalidScope("scope is not a space-delimited list of scope values")  # RFC 6749 §3.3
    return tuple(t for t in tokens if t not in _LOGIN_ONLY)
