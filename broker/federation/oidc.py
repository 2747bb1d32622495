"""The generic OpenID Connect connector: authorization code flow with PKCE S256.

Login, step by step:

1. ``authorization_url``: the IdP's ``authorization_endpoint`` (from discovery, whose ``issuer``
   must equal the configured one) with the broker's own ``client_id``, ``redirect_uri``,
   configured scopes, ``state``, ``nonce`` and S256 ``code_challenge``. Nothing the MCP client
   sent travels upstream: there is no parameter through which ``resource`` could.
2. ``check_response_issuer`` (RFC 9207) on the callback's ``iss``, then ``complete``: the code is
   redeemed at the ``token_endpoint`` with the PKCE verifier, the client authenticating with
   ``client_secret_basic`` (``client_secret_post`` when the IdP offers only that).
3. The ID token is checked in full (``broker.federation.idtoken``) with a key from the IdP's JWKS
   (``broker.federation.jwks``) and becomes an ``Identity``.

Which claims carry the stable subject, email, display name and groups comes from
``settings.claims`` (``[idps.claims]``); a name the operator left unset takes the connector's
default, ``subject_claim`` / ``groups_claim`` (``sub`` / ``groups`` here, ``oid`` for Entra ID).

Per-IdP connectors (Okta, Entra ID) subclass this and override the hooks at the bottom:
``fetch_metadata`` / ``metadata_issuer``, ``expected_issuer``, ``check_provider_claims``,
``identity_from``, ``token_endpoint_error``, ``explain_error``, and the ``subject_claim`` /
``groups_claim`` attributes.
"""

from __future__ import annotations

import base64
import copy
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Self
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import httpx

from broker.config import IdpClaimsSettings, IdpSettings
from broker.federation import claims as read
from broker.federation import idtoken, userinfo
from broker.federation.discovery import MetadataCache, ProviderMetadata, discovery_url, parse_metadata
from broker.federation.errors import (
    InvalidIdToken,
    IssuerMismatch,
    UpstreamError,
    UpstreamUnavailable,
    error_from_response,
)
from broker.federation.http import UpstreamHttp, UpstreamResponse
from broker.federation.identity import Identity
from broker.federation.idtoken import SignedClaims, VerifiedClaims
from broker.federation.jwks import JwksCache

S256 = "S256"
OPENID = "openid"
OFFLINE_ACCESS = "offline_access"  # OIDC Core §11: ask for a refresh token
_CODE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # RFC 7636 §4.2: base64url of a SHA-256 digest

log = logging.getLogger("broker.federation")


@dataclass(frozen=True)
class TokenResponse:
    """The token endpoint's answer (RFC 6749 §5.1), reduced to what the broker keeps."""

    unverified_id_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    access_token: str | None = field(default=None, repr=False)  # only for the UserInfo endpoint


class UpstreamEmail(NamedTuple):
    """An email claim and the IdP's word on it (``None``: the IdP said nothing, so not verified)."""

    address: str | None
    verified: bool | None


class OidcConnector:
    """A ``Connector`` for any OpenID provider that publishes discovery metadata and a JWKS."""

    discovery_ttl: float = 3600.0
    jwks_ttl: float = 600.0
    jwks_min_refresh_interval: float = 30.0
    request_timeout: float = 10.0  # total, per request to the IdP
    subject_claim = "sub"  # the default when [idps.claims] leaves ``subject`` unset
    groups_claim = "groups"  # likewise for ``groups``
    offline_access_consent = True  # OIDC Core §11: prompt=consent with offline_access, unless configured

    def __init__(self, settings: IdpSettings, *, redirect_uri: str, http: httpx.AsyncClient,
                 clock_skew: int = 60, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.idp_id = settings.id
        self.display_name = settings.display_name or settings.id
        self.redirect_uri = redirect_uri
        self.clock_skew = clock_skew
        self.clock = clock
        self.claim_names = claim_names(settings.claims, subject=self.subject_claim, groups=self.groups_claim)
        self.http = UpstreamHttp(http, settings.id, explain=self.explain_error)
        self._metadata = MetadataCache(self.fetch_metadata, ttl=self.discovery_ttl, clock=clock)
        self._jwks = JwksCache(self._fetch_jwks, idp_id=settings.id, ttl=self.jwks_ttl,
                               min_refresh_interval=self.jwks_min_refresh_interval, clock=clock)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.idp_id!r} issuer={self.settings.issuer!r}>"

    @property
    def scope(self) -> str:
        """The configured scopes; ``openid`` first, added if missing (OIDC Core §3.1.2.1: REQUIRED)."""
        return " ".join(dict.fromkeys([OPENID, *self.settings.scopes]))

    @property
    def wants_refresh_token(self) -> bool:
        """Whether sign-ins ask for a refresh token: the upstream check at refresh needs one."""
        return self.settings.check_upstream_on_refresh and self.settings.store_refresh_token

    @property
    def asks_consent_for_refresh_token(self) -> bool:
        configured = self.settings.offline_access_consent
        if configured is not None:
            return configured
        return self.offline_access_consent and self.settings.type != "test"

    def refresh_token_request(self, metadata: ProviderMetadata) -> tuple[list[str], dict[str, str]]:
        """The scopes and parameters that ask this IdP for a refresh token; none when the IdP cannot issue one."""
        if not self.wants_refresh_token or refresh_token_obstacle(metadata) is not None:
            return [], {}
        return [OFFLINE_ACCESS], ({"prompt": "consent"} if self.asks_consent_for_refresh_token else {})

    async def metadata(self) -> ProviderMetadata:
        return await self._metadata.get()

    async def refresh_token_obstacle(self) -> str | None:
        return refresh_token_obstacle(await self.metadata())

    def returning_to(self, redirect_uri: str) -> Self:
        twin = copy.copy(self)
        twin.redirect_uri = redirect_uri
        return twin

    # ------------------------------------------------------------ the Connector interface

    async def authorization_url(self, *, state: str, nonce: str, code_challenge: str,
                                login_hint: str | None = None) -> str:
        """Where to send the browser. ``ValueError`` for a malformed argument (a caller bug)."""
        _require_value("state", state)
        _require_value("nonce", nonce)
        if not isinstance(code_challenge, str) or not _CODE_CHALLENGE.match(code_challenge):
            raise ValueError("code_challenge must be an S256 challenge (43 base64url characters)")
        metadata = await self.metadata()
        extra_scopes, extra_params = self.refresh_token_request(metadata)
        params = {"response_type": "code", "client_id": self.settings.client_id, "redirect_uri": self.redirect_uri,
                  "scope": " ".join(dict.fromkeys([*self.scope.split(), *extra_scopes])), "state": state,
                  "nonce": nonce, "code_challenge": code_challenge, "code_challenge_method": S256, **extra_params}
        if login_hint:
            params["login_hint"] = login_hint  # OIDC Core §3.1.2.1: a hint, the IdP still authenticates
        return with_query(metadata.authorization_endpoint, params)

    async def complete(self, *, code: str, code_verifier: str, nonce: str) -> Identity:
        """Redeem ``code`` and turn the verified ID token into an ``Identity``."""
        metadata = await self.metadata()
        tokens = await self.redeem(metadata, code=code, code_verifier=code_verifier)
        claims = await self.verify_id_token(tokens.unverified_id_token, metadata, nonce=nonce)
        claims = await self.with_userinfo(claims, tokens, metadata)
        if self.wants_refresh_token and tokens.refresh_token is None:
            log.warning("the identity provider issued no refresh token at this sign-in: check_upstream_on_refresh "
                        "cannot run for the sessions it starts (%s)", refresh_token_obstacle(metadata)
                        or "it ignored offline_access; see offline_access_consent and the app's refresh token grant",
                        extra={"idp": self.idp_id})
        identity = await self.identity_from(claims, tokens)
        log.info("upstream login verified", extra={"idp": self.idp_id})
        return identity

    async def check_response_issuer(self, iss: str | None) -> None:
        """RFC 9207 §2.4: the callback's ``iss`` must name this IdP; required when it advertises it."""
        metadata = await self.metadata()
        if iss is None and not metadata.authorization_response_iss_parameter_supported:
            return  # the IdP does not send iss; the per-IdP redirect URI is the mix-up defence
        if iss != metadata.issuer:
            log.warning("authorization response from an unexpected issuer", extra={"idp": self.idp_id})
            raise IssuerMismatch("the authorization response did not come from this identity provider")

    # ------------------------------------------------------------ token endpoint

    async def redeem(self, metadata: ProviderMetadata, *, code: str, code_verifier: str) -> TokenResponse:
        """RFC 6749 §4.1.3 with RFC 7636 §4.5: exchange the code, proving possession of the verifier."""
        form, headers = self.client_authentication(metadata)
        form |= {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                 "code_verifier": code_verifier}
        response = await self.http.post_form(metadata.token_endpoint, data=form, headers=headers,
                                             what="token endpoint", timeout=self.request_timeout)
        return self._token_response(response)

    async def refresh(self, refresh_token: str) -> str | None:
        """Use the IdP refresh token (RFC 6749 §6) to learn whether the IdP still accepts the user.

        Returns the new refresh token when the IdP rotated it (else None). ``UpstreamRejected`` when
        the IdP refuses (the user was disabled, logged out, or the grant revoked there).
        """
        metadata = await self.metadata()
        form, headers = self.client_authentication(metadata)
        form |= {"grant_type": "refresh_token", "refresh_token": refresh_token}
        response = await self.http.post_form(metadata.token_endpoint, data=form, headers=headers,
                                             what="token endpoint (refresh)", timeout=self.request_timeout)
        if 200 <= response.status_code < 300 and isinstance(response.body, dict):
            rotated = response.body.get("refresh_token")
            return rotated if isinstance(rotated, str) and rotated else None
        error = self.token_endpoint_error(response)
        log.warning("upstream refresh refused", extra={"idp": self.idp_id, "status": response.status_code,
                                                       "error": error.upstream_error})
        raise error

    async def revoke_refresh_token(self, refresh_token: str) -> bool:
        """RFC 7009 at the IdP's ``revocation_endpoint``: True once revoked, False when the IdP offers none.

        ``UpstreamError`` when the IdP refuses or cannot be reached (RFC 7009 §2.2: any 200 is success).
        """
        metadata = await self.metadata()
        if metadata.revocation_endpoint is None:
            return False
        form, headers = self.client_authentication(metadata)
        form |= {"token": refresh_token, "token_type_hint": "refresh_token"}
        response = await self.http.post_form(metadata.revocation_endpoint, data=form, headers=headers,
                                             what="revocation endpoint", timeout=self.request_timeout)
        if response.status_code == 200:
            return True
        error = self.token_endpoint_error(response)
        log.warning("upstream revocation refused", extra={"idp": self.idp_id, "status": response.status_code,
                                                          "error": error.upstream_error})
        raise error

    def client_authentication(self, metadata: ProviderMetadata) -> tuple[dict[str, str], dict[str, str]]:
        """Form fields and headers that authenticate the broker (RFC 6749 §2.3)."""
        client_id = self.settings.client_id
        if self.settings.client_secret is None:
            return {"client_id": client_id}, {}  # RFC 6749 §4.1.3: a public client names itself
        secret = self.settings.client_secret.get_secret_value()
        methods = metadata.token_endpoint_auth_methods
        if "client_secret_post" in methods and "client_secret_basic" not in methods:
            return {"client_id": client_id, "client_secret": secret}, {}  # RFC 6749 §2.3.1, when it is all they take
        return {}, {"authorization": basic_authorization(client_id, secret)}

    def _token_response(self, response: UpstreamResponse) -> TokenResponse:
        if 200 <= response.status_code < 300 and isinstance(response.body, dict):
            return _read_tokens(response.body)
        error = self.token_endpoint_error(response)
        log.warning("upstream token endpoint refused", extra={"idp": self.idp_id, "status": response.status_code,
                                                              "error": error.upstream_error})
        raise error

    # ------------------------------------------------------------ ID token

    async def verify_id_token(self, unverified_id_token: str, metadata: ProviderMetadata, *,
                              nonce: str) -> VerifiedClaims:
        """Every check of OIDC Core §3.1.3.7, then the IdP-specific ones; ``InvalidIdToken`` on failure."""
        try:
            header = idtoken.read_header(unverified_id_token, metadata.id_token_algorithms)
            signed_claims = await self._jwks.verified(
                header, lambda key: idtoken.verify_signature(unverified_id_token, key, header), idtoken.BadSignature)
            expected = idtoken.Expected(issuer=self.expected_issuer(signed_claims),
                                        client_id=self.settings.client_id, nonce=nonce,
                                        now=self.clock(), skew=self.clock_skew)
            verified_claims = idtoken.check_claims(signed_claims, expected)
            self.check_provider_claims(verified_claims)
        except InvalidIdToken as rejected:
            log.warning("upstream ID token rejected", extra={"idp": self.idp_id, "reason": rejected.description})
            raise
        return verified_claims

    # ------------------------------------------------------------ UserInfo (OIDC Core §5.3)

    async def with_userinfo(self, claims: VerifiedClaims, tokens: TokenResponse,
                            metadata: ProviderMetadata) -> VerifiedClaims:
        """The claims, completed from UserInfo when configured or when a mapped claim is missing."""
        lacking = userinfo.missing(claims, self.userinfo_claims())
        mode = self.settings.userinfo
        if mode == "never" or (mode == "auto" and not lacking):
            self._log_missing(lacking, "the ID token (userinfo = never)")
            return claims
        if metadata.userinfo_endpoint is None or tokens.access_token is None:
            self._log_missing(lacking, "the ID token, and the IdP offers no userinfo endpoint or access token")
            return claims
        if lacking:
            log.info("the ID token lacks mapped claims; asking userinfo", extra={"idp": self.idp_id,
                                                                                 "missing": lacking})
        found = await self.http.get_json(metadata.userinfo_endpoint, what="userinfo endpoint",
                                         timeout=self.request_timeout,
                                         headers={"authorization": f"Bearer {tokens.access_token}"})
        try:
            completed = userinfo.merged(claims, found)
        except InvalidIdToken as rejected:
            log.warning("upstream userinfo rejected", extra={"idp": self.idp_id, "reason": rejected.description})
            raise
        self._log_missing(userinfo.missing(completed, self.userinfo_claims()), "the ID token or userinfo")
        return completed

    def userinfo_claims(self) -> tuple[str, ...]:
        """The mapped claims whose absence from the ID token sends the connector to UserInfo."""
        names = self.claim_names
        return (names.email, names.name, names.groups)

    def _log_missing(self, names: list[str], where: str) -> None:
        if names:
            log.warning("the identity provider sent no %s in %s: the user signs in without them (check the "
                        "scopes and the IdP's claim settings)", ", ".join(names), where,
                        extra={"idp": self.idp_id, "missing": names})

    # ------------------------------------------------------------ hooks for per-IdP connectors

    async def fetch_metadata(self) -> ProviderMetadata:
        """Discovery (OIDC Discovery §4) from the configured issuer; the document must name ``metadata_issuer``."""
        document = await self.http.get_json(discovery_url(self.settings.issuer), what="discovery document",
                                            timeout=self.request_timeout)
        try:
            metadata = parse_metadata(document, issuer=self.metadata_issuer)
        except UpstreamUnavailable as rejected:
            log.warning("upstream metadata rejected", extra={"idp": self.idp_id, "reason": rejected.description})
            raise
        log.info("upstream metadata fetched", extra={"idp": self.idp_id})
        return metadata

    @property
    def metadata_issuer(self) -> str:
        """The ``issuer`` the discovery document must carry: the configured one (Entra multi-tenant: a template)."""
        return self.settings.issuer

    def expected_issuer(self, claims: SignedClaims) -> str:
        """The ``iss`` the ID token must carry: the configured issuer, exactly (§3.1.3.7 item 2)."""
        return self.settings.issuer

    def check_provider_claims(self, claims: VerifiedClaims) -> None:
        """Checks beyond OIDC Core (Entra: ``tid``); the generic provider has none."""

    async def identity_from(self, claims: VerifiedClaims, tokens: TokenResponse) -> Identity:
        """The ``Identity`` for verified claims; connectors change claim names or fetch more groups."""
        return self.make_identity(claims, tokens, subject=self.subject_of(claims), email=self.email_of(claims),
                                  groups=read.groups(claims, self.claim_names.groups, idp_id=self.idp_id))

    def token_endpoint_error(self, response: UpstreamResponse) -> UpstreamError:
        """The error for a token endpoint answer other than 2xx JSON (Okta adds its own error shape)."""
        body, status = response.body, response.status_code
        if status < 500 and isinstance(body, dict) and "error" in body:
            return error_from_response(body.get("error"), body.get("error_description"))  # RFC 6749 §5.2
        return UpstreamUnavailable(f"the identity provider's token endpoint answered HTTP {status}")

    def explain_error(self, response: UpstreamResponse) -> str | None:
        """A short phrase of ours for an IdP's own error body, added to failure descriptions (Okta)."""
        return None

    # ------------------------------------------------------------ building the Identity

    def subject_of(self, claims: VerifiedClaims) -> str:
        """The stable subject: claim ``claim_names.subject`` (``sub`` unless configured)."""
        subject = read.string(claims, self.claim_names.subject)
        if subject is None:
            raise InvalidIdToken(f"the ID token has no {self.claim_names.subject} claim")
        if len(subject) > idtoken.MAX_SUBJECT_LENGTH:
            raise InvalidIdToken(f"the ID token {self.claim_names.subject} claim is too long")  # fits the user key
        return subject

    def email_of(self, claims: VerifiedClaims) -> UpstreamEmail:
        """The email and whether the IdP verified it; ``email_verified`` speaks only for ``email``."""
        address = read.string(claims, self.claim_names.email)
        if self.claim_names.email != "email":
            return UpstreamEmail(address, None)  # OIDC Core §5.1: email_verified is about the email claim
        return UpstreamEmail(address, read.boolean(claims, "email_verified"))

    def make_identity(self, claims: VerifiedClaims, tokens: TokenResponse, *, subject: str, email: UpstreamEmail,
                      groups: tuple[str, ...]) -> Identity:
        name = read.display_name(claims, self.claim_names.name)
        refresh_token = tokens.refresh_token if self.settings.store_refresh_token else None
        return Identity(
            idp_id=self.idp_id, subject=subject, email=email.address, email_verified=email.verified, name=name,
            groups=groups, claims=claims, auth_time=read.timestamp(claims, "auth_time"),
            acr=read.string(claims, "acr"), amr=read.strings(claims, "amr"), upstream_refresh_token=refresh_token)

    async def _fetch_jwks(self) -> object:
        metadata = await self.metadata()
        return await self.http.get_json(metadata.jwks_uri, what="JWKS", timeout=self.request_timeout)


def refresh_token_obstacle(metadata: ProviderMetadata) -> str | None:
    """Why this IdP cannot issue the broker a refresh token, as its discovery document says; None if it may."""
    if metadata.grant_types_supported is not None and "refresh_token" not in metadata.grant_types_supported:
        return "its discovery document does not list the refresh_token grant"
    if metadata.scopes_supported is not None and OFFLINE_ACCESS not in metadata.scopes_supported:
        return "its discovery document does not list the offline_access scope"
    return None


def claim_names(configured: IdpClaimsSettings, *, subject: str, groups: str) -> IdpClaimsSettings:
    """The configured claim names; ``subject`` and ``groups`` the operator left unset take these defaults."""
    defaults = {"subject": subject, "groups": groups}
    return configured.model_copy(update={k: v for k, v in defaults.items() if k not in configured.model_fields_set})


def _read_tokens(body: dict[str, object]) -> TokenResponse:
    unverified_id_token = body.get("id_token")
    if not isinstance(unverified_id_token, str) or not unverified_id_token:
        raise InvalidIdToken("the identity provider returned no ID token")  # OIDC Core §3.1.3.3: REQUIRED
    refresh_token = body.get("refresh_token")
    access_token = body.get("access_token")
    return TokenResponse(unverified_id_token=unverified_id_token,
                         refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
                         access_token=access_token if isinstance(access_token, str) and access_token else None)


def basic_authorization(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded first, then joined and base64-encoded."""
    credentials = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added; the endpoint's own query is kept (RFC 6749 §3.1), ours win."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*kept, *params.items()])))


def _require_value(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
