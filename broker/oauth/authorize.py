"""The authorization request (``/authorize``): validation in RFC 6749 §4.1.2.1 order.

Until the client and its redirect URI are known good, every problem is an
``AuthorizationPageError`` (shown to the user; never a redirect, so never an open redirector).
After that, problems are ``OAuth2Error``s that the web layer sends to the redirect URI with
``state`` and ``iss`` (RFC 9207).

The target is the MCP server ``resource`` names; a request without ``resource`` that asks for
``openid`` is a sign-in (OpenID Connect), whose target is the broker's own UserInfo endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from broker.oauth import oidc_claims, scopes
from broker.oauth.cimd import CimdError
from broker.oauth.clients import ClientDirectory, ClientView
from broker.oauth.errors import (
    AuthorizationPageError,
    InvalidRequest,
    InvalidTargetError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)
from broker.oauth.params import Params
from broker.registry import servers
from broker.storage.enums import ClientStatus

CODE_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 §4.2
JWK_THUMBPRINT = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url SHA-256 (RFC 7638), as dpop_jkt carries it


@dataclass(frozen=True)
class AuthorizationRequest:
    """A fully validated authorization request, ready for the user to sign in."""

    client: ClientView
    redirect_uri: str
    state: str | None
    server: servers.Server
    requested_scopes: frozenset[str] | None
    oidc_scopes: frozenset[str]  # openid, profile, email as asked for; empty unless openid was
    code_challenge: str
    nonce: str | None
    login_hint: str | None
    prompt: frozenset[str] = frozenset()  # OIDC Core §3.1.2.1 values; consent: ask even when consented
    dpop_jkt: str | None = None  # RFC 9449 §10: the code is redeemed only with a proof by this key


class AuthorizationError(Exception):
    """An ``OAuth2Error`` bound for the client's (validated) redirect URI."""

    def __init__(self, error: OAuth2Error, redirect_uri: str, state: str | None):
        super().__init__(error.error)
        self.error = error
        self.redirect_uri = redirect_uri
        self.state = state


def redirect_location(redirect_uri: str, issuer: str, state: str | None, **values: str | None) -> str:
    """The redirect URI with response parameters, ``state`` as given, and ``iss`` (RFC 9207 §2)."""
    pairs = [(k, v) for k, v in values.items() if v is not None]
    if state is not None:
        pairs.append(("state", state))
    pairs.append(("iss", issuer))
    return redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(pairs)


def error_location(failure: AuthorizationError, issuer: str) -> str:
    error = failure.error
    return redirect_location(failure.redirect_uri, issuer, failure.state, error=error.error,
                             error_description=error.description or None)


def validate(session: Session, params: Params, issuer: str,
             clients: ClientDirectory | None = None) -> AuthorizationRequest:
    client, redirect_uri = _client_and_redirect(session, params, clients or ClientDirectory())
    state = _state(params, redirect_uri)
    try:
        return _validate_rest(session, params, issuer, client, redirect_uri, state)
    except OAuth2Error as error:
        raise AuthorizationError(error, redirect_uri, state) from None


def _client_and_redirect(session: Session, params: Params, clients: ClientDirectory) -> tuple[ClientView, str]:
    try:
        client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri")
    except InvalidRequest as exc:
        raise AuthorizationPageError("Invalid request", exc.description or "a parameter is repeated") from None
    if not client_id:
        raise AuthorizationPageError("Invalid request", "The request names no client (client_id is missing).")
    try:
        row = clients.find(session, client_id)
    except CimdError as exc:  # CIMD: the document decides the redirect URIs, so no redirect without it
        raise AuthorizationPageError("Application could not be verified", f"The application says it is described "
                                     f"at {client_id[:200]}, but {exc.detail}.") from None
    if row is None:
        raise AuthorizationPageError("Unknown application", "The application that sent you here is not registered "
                                     "with this authorization server.")
    client = ClientView(row)
    if not redirect_uri:
        raise AuthorizationPageError("Invalid request", "The request names no redirect URI (redirect_uri).")
    if not client.check_redirect_uri(redirect_uri):  # OAuth 2.1 §4.1.2.1: exact match, never redirect
        raise AuthorizationPageError("Invalid redirect", "The application asked to send you to an address it has "
                                     "not registered, so you were not sent anywhere.")
    if row.status == ClientStatus.PENDING:
        raise AuthorizationPageError("Application awaiting approval", "An administrator has not yet approved this "
                                     "application.", status_code=403)
    if row.status != ClientStatus.ACTIVE:
        raise AuthorizationPageError("Application disabled", "An administrator has disabled this application.",
                                     status_code=403)
    return client, redirect_uri


def _state(params: Params, redirect_uri: str) -> str | None:
    try:
        return params.get("state")
    except InvalidRequest as exc:
        raise AuthorizationError(exc, redirect_uri, None) from None


def _validate_rest(session: Session, params: Params, issuer: str, client: ClientView, redirect_uri: str,
                   state: str | None) -> AuthorizationRequest:
    if params.get("response_type") != "code":
        raise UnsupportedResponseTypeError("response_type must be code")  # OAuth 2.1 §4.1.1
    if not client.check_grant_type("authorization_code"):
        raise UnauthorizedClientError("the client may not use the authorization code grant")
    server = _server(session, params, issuer)
    params.reject_duplicates()  # RFC 6749 §3.1
    challenge = _code_challenge(params)
    requested = scopes.parse(params.get("scope"))
    scopes.require_known(requested, server.scopes.keys())
    oidc = oidc_claims.requested((params.get("scope") or "").split(" "))
    if server.id == servers.USERINFO_ID:
        requested = oidc  # a sign-in asks for exactly its OIDC scopes
    prompt = _prompt(params)
    return AuthorizationRequest(client=client, redirect_uri=redirect_uri, state=state, server=server,
                                requested_scopes=requested, oidc_scopes=oidc, code_challenge=challenge,
                                nonce=params.get("nonce"), login_hint=params.get("login_hint"), prompt=prompt,
                                dpop_jkt=_dpop_jkt(params))


def _dpop_jkt(params: Params) -> str | None:
    value = params.get("dpop_jkt")
    if value is not None and not JWK_THUMBPRINT.match(value):
        raise InvalidRequest("dpop_jkt must be a JWK SHA-256 thumbprint (RFC 7638), base64url")  # RFC 9449 §10
    return value


def _prompt(params: Params) -> frozenset[str]:
    """OIDC Core §3.1.2.1 ``prompt``: space-delimited; ``none`` alone or not at all."""
    values = frozenset((params.get("prompt") or "").split())
    if "none" in values and len(values) > 1:
        raise InvalidRequest("prompt none cannot be combined with other values")  # OIDC Core §3.1.2.1
    if values == {"none"}:
        raise OAuth2Error("the user must sign in", error="login_required")  # OIDC Core §3.1.2.6
    return values


def _server(session: Session, params: Params, issuer: str) -> servers.Server:
    resources = params.get_all("resource")
    if not resources and _asks_for_openid(params):
        return servers.userinfo(issuer)  # OIDC Core §3.1.2.1: a sign-in reaches no MCP server
    if not resources:
        raise InvalidTargetError("the resource parameter is required")  # MCP authorization: RFC 8707
    if len(resources) > 1:
        raise InvalidTargetError("name exactly one resource")  # one token, one audience
    try:
        return servers.resolve(session, resources[0], issuer)
    except servers.UnknownResource as exc:
        raise InvalidTargetError(str(exc)) from None


def _asks_for_openid(params: Params) -> bool:
    # every value: a repeated scope is refused right after this, with the other duplicates (RFC 6749 §3.1)
    return any("openid" in value.split(" ") for value in params.get_all("scope"))


def _code_challenge(params: Params) -> str:
    challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
    if not challenge:
        raise InvalidRequest("code_challenge is required (PKCE)")  # OAuth 2.1 §4.1.1
    if method != "S256":
        raise InvalidRequest("code_challenge_method must be S256")  # plain is not allowed (OAuth 2.1 §4.1.1)
    if not CODE_CHALLENGE.match(challenge):
        raise InvalidRequest("code_challenge is malformed")  # RFC 7636 §4.2
    return challenge
