"""The authorization endpoint: validate the request, check the login form, issue a code.

Validation runs in two phases (RFC 6749 §4.1.2.1): until ``client_id`` and ``redirect_uri``
are known good, errors carry no redirect and are shown to the user; after that, errors carry
the redirect URI and ``state`` and go back to the client. Nothing is stored: the request
travels in the login form's hidden fields and is validated again when the form is posted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from broker.config import TestIdpUser
from broker.testidp import pkce, scopes
from broker.testidp.directory import Directory
from broker.testidp.errors import (
    InvalidRequest,
    LoginRequired,
    OAuthError,
    RedirectTarget,
    RequestNotSupported,
    RequestUriNotSupported,
    UnsupportedResponseType,
)
from broker.testidp.params import ProviderParams
from broker.testidp.sealed import AuthorizationCode, Sealer

log = logging.getLogger("broker.testidp")


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request (OIDC Core §3.1.2.1)."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str
    login_hint: str | None
    prompt: tuple[str, ...]

    def form_fields(self) -> dict[str, str]:
        """The request as hidden form fields; posted back, they are validated again."""
        fields = {"client_id": self.client_id, "redirect_uri": self.redirect_uri, "response_type": "code",
                  "scope": " ".join(self.scope), "code_challenge": self.code_challenge,
                  "code_challenge_method": pkce.S256}
        optional = {"state": self.state, "nonce": self.nonce}
        return fields | {k: v for k, v in optional.items() if v is not None}


@dataclass(frozen=True)
class AuthorizationResponse:
    """Where to send the user agent: a redirect URI and the parameters to add to it."""

    redirect_uri: str
    params: dict[str, str]

    def location(self) -> str:
        """RFC 6749 §3.1.2: the redirect URI's own query is kept; ours are appended."""
        parts = urlsplit(self.redirect_uri)
        query = parse_qsl(parts.query, keep_blank_values=True) + list(self.params.items())
        return urlunsplit(parts._replace(query=urlencode(query)))


class LoginFailed(Exception):
    """Wrong or missing credentials: show the login form again for ``request``."""

    def __init__(self, request: AuthorizationRequest, username: str, message: str):
        super().__init__(message)
        self.request = request
        self.username = username
        self.message = message


class Authorizer:
    def __init__(self, issuer: str, directory: Directory, sealer: Sealer, code_lifetime: int,
                 clock: Callable[[], float]):
        self.issuer = issuer
        self.directory = directory
        self.sealer = sealer
        self.code_lifetime = code_lifetime
        self.clock = clock

    def begin(self, params: ProviderParams) -> AuthorizationRequest:
        """Validate a request that should show the login form."""
        request = self.validate(params)
        if "none" in request.prompt:
            # OIDC Core §3.1.2.6: the test IdP keeps no sessions, so it can never log in silently
            raise LoginRequired("prompt=none, but the user must log in", self.target(request))
        return request

    def login(self, params: ProviderParams) -> AuthorizationResponse:
        """Validate the posted form again, check the credentials, and redirect with a code."""
        request = self.validate(params)
        username, password = params.get("username") or "", params.get("password") or ""
        if not username or not password:
            raise LoginFailed(request, username, "Enter a username and a password.")
        user = self.directory.check_password(username, password)
        if user is None:
            log.info("test IdP login failed", extra={"client_id": request.client_id,
                                                     "known_user": self.directory.user(username) is not None})
            raise LoginFailed(request, username, "Wrong username or password.")
        log.info("test IdP login", extra={"user": user.username, "client_id": request.client_id})
        return self.success(request, user)

    def success(self, request: AuthorizationRequest, user: TestIdpUser) -> AuthorizationResponse:
        """The code response (RFC 6749 §4.1.2) with ``iss`` (RFC 9207)."""
        now = int(self.clock())
        code = AuthorizationCode(client_id=request.client_id, redirect_uri=request.redirect_uri,
                                 username=user.username, nonce=request.nonce,
                                 code_challenge=request.code_challenge, scope=request.scope,
                                 auth_time=now, exp=now + self.code_lifetime)
        params = {"code": self.sealer.seal_code(code)}
        if request.state is not None:
            params["state"] = request.state
        return AuthorizationResponse(request.redirect_uri, params | {"iss": self.issuer})

    def error_response(self, error: OAuthError) -> AuthorizationResponse:
        """The error redirect for a redirectable error (RFC 6749 §4.1.2.1, RFC 9207 §2)."""
        assert error.redirect is not None
        params = error.body()
        if error.redirect.state is not None:
            params["state"] = error.redirect.state
        return AuthorizationResponse(error.redirect.redirect_uri, params | {"iss": self.issuer})

    def validate(self, params: ProviderParams) -> AuthorizationRequest:
        """Every check of the authorization request; raises ``OAuthError`` (redirectable once safe)."""
        client_id, redirect_uri = self._trusted_client_and_redirect(params)
        target = RedirectTarget(redirect_uri, _state(params))
        try:
            return self._validate_rest(params, client_id, redirect_uri, target.state)
        except OAuthError as exc:
            raise exc.redirecting_to(target) from None

    def target(self, request: AuthorizationRequest) -> RedirectTarget:
        return RedirectTarget(request.redirect_uri, request.state)

    def _trusted_client_and_redirect(self, params: ProviderParams) -> tuple[str, str]:
        # RFC 6749 §4.1.2.1: errors up to here are shown to the user, never redirected
        client_id = params.require("client_id")
        client = self.directory.client(client_id)
        if client is None:
            raise InvalidRequest("unknown client_id")
        redirect_uri = params.require("redirect_uri")  # OIDC Core §3.1.2.1: required
        if redirect_uri not in client.redirect_uris:
            raise InvalidRequest("redirect_uri is not registered for this client")  # RFC 9700 §4.1.3: exact
        return client_id, redirect_uri

    def _validate_rest(self, params: ProviderParams, client_id: str, redirect_uri: str,
                       state: str | None) -> AuthorizationRequest:
        params.reject_duplicates()  # RFC 6749 §3.1
        _refuse_request_objects(params)
        _check_response_type(params)
        scope = scopes.parse(params.require("scope"))  # OIDC Core §3.1.2.1: scope is required
        scopes.require_openid(scope)
        challenge = pkce.check_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
        return AuthorizationRequest(client_id=client_id, redirect_uri=redirect_uri, scope=scope, state=state,
                                    nonce=params.get("nonce"), code_challenge=challenge,
                                    login_hint=params.get("login_hint"), prompt=_prompt(params.get("prompt")))


def _state(params: ProviderParams) -> str | None:
    """``state`` to echo on errors; None when it is repeated (there is no one value to echo)."""
    try:
        return params.get("state")
    except InvalidRequest:
        return None


def _refuse_request_objects(params: ProviderParams) -> None:
    if params.has("request"):
        raise RequestNotSupported("request objects are not supported")  # OIDC Core §6.1
    if params.has("request_uri"):
        raise RequestUriNotSupported("request_uri is not supported")  # OIDC Core §6.2


def _check_response_type(params: ProviderParams) -> None:
    response_type = params.require("response_type")
    if response_type != "code":
        raise UnsupportedResponseType("only response_type=code is supported")  # OAuth 2.1 §4.1.1
    response_mode = params.get("response_mode")
    if response_mode not in (None, "query"):
        raise InvalidRequest("only response_mode=query is supported")


def _prompt(raw: str | None) -> tuple[str, ...]:
    prompt = tuple(raw.split()) if raw else ()
    if "none" in prompt and len(prompt) > 1:
        raise InvalidRequest("prompt=none cannot be combined with other values")  # OIDC Core §3.1.2.1
    return prompt
