"""Microsoft Entra ID (v2.0 endpoints): tenants, ``oid``, group object ids and group overage.

Issuer forms (``issuer`` in config):

- single-tenant: ``https://login.microsoftonline.com/{tenant-id}/v2.0``; users of that tenant sign in.
- multi-tenant: ``https://login.microsoftonline.com/organizations/v2.0`` (or ``/common/v2.0``); users of
  the tenants listed in ``entra.allowed_tenants`` (required) sign in.

The tenant is its id (a GUID), not a domain name. Multi-tenant discovery documents carry the issuer
*template* ``https://login.microsoftonline.com/{tenantid}/v2.0``; each ID token's ``iss`` must be that
template with the token's own ``tid``, and ``tid`` must be allowed. The host is not checked
(sovereign clouds use other hosts; tests serve it on loopback); https only, except on loopback.

Claims: the stable subject is ``oid`` (the user's object id; ``sub`` is pairwise per application),
unless ``[idps.claims] subject`` says otherwise. Email comes from ``email``, else ``preferred_username``
or ``upn`` when they look like an address. Any tenant's admin can set any address there, so only an
``email`` claim with the optional claim ``xms_edov: true`` (the tenant owns the address's domain) counts
as verified; nothing else is ever treated as the user's email (``Identity.email_verified``). ``groups``
holds group object ids, mapped to names by ``entra.group_names`` (unmapped ids pass through). A user in
more groups than a token holds gets no ``groups`` but ``_claim_names.groups`` (or ``hasgroups: true``): the
groups then come from Microsoft Graph through a ``GroupDirectory`` (``GraphGroupDirectory``; the endpoint
named in the token's ``_claim_sources`` is never called, so a token cannot point the broker anywhere).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from broker.config import IdpSettings, is_loopback_host
from broker.federation import claims as read
from broker.federation.errors import InvalidIdToken, IssuerMismatch, UpstreamUnavailable, error_from_response
from broker.federation.http import UpstreamHttp, UpstreamResponse
from broker.federation.identity import Identity
from broker.federation.idtoken import SignedClaims, VerifiedClaims
from broker.federation.oidc import OidcConnector, TokenResponse, UpstreamEmail

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")  # as Entra writes ids
MULTI_TENANT_SEGMENTS = ("organizations", "common")
TENANT_PLACEHOLDER = "{tenantid}"
_ISSUER_PATH = re.compile(r"^/([^/]+)/v2\.0$")
DEFAULT_APP_TOKEN_LIFETIME = 3599.0  # Entra's usual expires_in, for an answer without a usable one

log = logging.getLogger("broker.federation")


@dataclass(frozen=True)
class EntraIssuer:
    """A parsed Entra issuer: ``base`` is scheme and host; ``tenant`` ``None`` for a multi-tenant app."""

    base: str
    tenant: str | None

    @property
    def template(self) -> str:
        """The issuer with the tenant left open, as multi-tenant discovery documents publish it."""
        return self.for_tenant(TENANT_PLACEHOLDER)

    def for_tenant(self, tenant_id: str) -> str:
        return f"{self.base}/{tenant_id}/v2.0"

    def token_endpoint(self, tenant_id: str) -> str:
        return f"{self.base}/{tenant_id}/oauth2/v2.0/token"


def parse_issuer(issuer: str) -> EntraIssuer:
    """Recognise a tenant or a multi-tenant issuer; ``ValueError`` naming what is wrong otherwise."""
    parts = urlsplit(issuer)
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        raise ValueError(f"Entra issuer {issuer!r}: must be https")
    match = _ISSUER_PATH.match(parts.path)
    if parts.query or parts.fragment or parts.username or match is None:
        raise ValueError(f"Entra issuer {issuer!r}: expected https://login.microsoftonline.com/{{tenant-id}}/v2.0 "
                         "or .../organizations/v2.0 for a multi-tenant app")
    segment = match.group(1)
    if segment in MULTI_TENANT_SEGMENTS:
        return EntraIssuer(f"{parts.scheme}://{parts.netloc}", None)
    if not GUID.match(segment):
        raise ValueError(f"Entra issuer {issuer!r}: name the tenant by its id (a lower-case GUID), "
                         "not by a domain name")
    return EntraIssuer(f"{parts.scheme}://{parts.netloc}", segment)


def allowed_tenants(issuer: EntraIssuer, configured: Iterable[str]) -> frozenset[str]:
    """The tenant ids whose users may sign in; ``ValueError`` for a list that cannot be meant."""
    tenants = frozenset(t.lower() for t in configured)
    bad = sorted(t for t in tenants if not GUID.match(t))
    if bad:
        raise ValueError(f"entra.allowed_tenants: {bad[0]!r} is not a tenant id (GUID)")
    if issuer.tenant is None:
        if not tenants:
            raise ValueError("entra.allowed_tenants: a multi-tenant issuer needs the list of tenants allowed in")
        return tenants
    if tenants - {issuer.tenant}:
        raise ValueError("entra.allowed_tenants: a single-tenant issuer admits only its own tenant; use "
                         ".../organizations/v2.0 as the issuer for several tenants")
    return frozenset({issuer.tenant})


def has_group_overage(claims: VerifiedClaims) -> bool:
    """Entra's signal that the user's groups did not fit in the token (a ``_claim_names`` entry, or ``hasgroups``)."""
    claim_names = claims.get("_claim_names")
    return (isinstance(claim_names, dict) and "groups" in claim_names) or claims.get("hasgroups") is True


class GroupDirectory(Protocol):
    """Where a user's groups come from when the token could not hold them (group overage)."""

    async def member_groups(self, tenant_id: str, object_id: str) -> list[str]:
        """Object ids of every group ``object_id`` belongs to in ``tenant_id`` (transitively).

        Raises only ``UpstreamUnavailable``; never logs a token or secret.
        """
        ...


class EntraConnector(OidcConnector):
    """A ``Connector`` for Entra ID single- and multi-tenant apps (see the module docstring)."""

    subject_claim = "oid"
    offline_access_consent = False  # Entra ID issues refresh tokens for offline_access without a prompt

    def userinfo_claims(self) -> tuple[str, ...]:
        """None: Entra's ID tokens carry the profile, ``email_of`` falls back to ``preferred_username``/``upn``,
        and its UserInfo (Microsoft Graph) has no groups (overage goes to Graph itself); ``userinfo = "always"``
        still asks it."""
        return ()

    def __init__(self, settings: IdpSettings, *, redirect_uri: str, http: httpx.AsyncClient,
                 clock_skew: int = 60, clock: Callable[[], float] = time.time,
                 group_directory: GroupDirectory | None = None):
        self.entra_issuer = parse_issuer(settings.issuer)  # a wrong form fails at start, not at a login
        self.allowed_tenants = allowed_tenants(self.entra_issuer, settings.entra.allowed_tenants)
        self.group_names = {group_id.lower(): name for group_id, name in settings.entra.group_names.items()}
        super().__init__(settings, redirect_uri=redirect_uri, http=http, clock_skew=clock_skew, clock=clock)
        self.group_directory: GroupDirectory = group_directory or GraphGroupDirectory(
            http, idp_id=settings.id, issuer=self.entra_issuer, client_id=settings.client_id,
            client_secret=settings.client_secret.get_secret_value() if settings.client_secret else None,
            graph_endpoint=settings.entra.graph_endpoint, clock=clock)

    @property
    def multi_tenant(self) -> bool:
        return self.entra_issuer.tenant is None

    @property
    def metadata_issuer(self) -> str:
        """A multi-tenant discovery document names the issuer template on the configured host."""
        return self.entra_issuer.template if self.multi_tenant else self.settings.issuer

    async def check_response_issuer(self, iss: str | None) -> None:
        """RFC 9207 §2.4; for a multi-tenant app ``iss`` must be the issuer of an allowed tenant."""
        if not self.multi_tenant:
            await super().check_response_issuer(iss)
            return
        metadata = await self.metadata()
        if iss is None and not metadata.authorization_response_iss_parameter_supported:
            return  # the IdP does not send iss; the per-IdP redirect URI is the mix-up defence
        if iss not in {self.entra_issuer.for_tenant(tenant) for tenant in self.allowed_tenants}:
            log.warning("authorization response from an unexpected issuer", extra={"idp": self.idp_id})
            raise IssuerMismatch("the authorization response did not come from an allowed tenant")

    def expected_issuer(self, claims: SignedClaims) -> str:
        """Single-tenant: the configured issuer. Multi-tenant: the template with the token's own ``tid``."""
        tenant_id = claims.get("tid")
        if not isinstance(tenant_id, str) or not GUID.match(tenant_id):
            raise InvalidIdToken("the ID token has no tenant id (tid)")  # Entra: every v2.0 ID token names its tenant
        if not self.multi_tenant:
            return self.settings.issuer  # OIDC Core §3.1.3.7 item 2: exactly the configured issuer
        return self.entra_issuer.for_tenant(tenant_id)  # Entra: validate iss against the template with tid

    def check_provider_claims(self, claims: VerifiedClaims) -> None:
        """``tid`` must be an allowed tenant (its presence and form were checked with ``iss``)."""
        if claims["tid"] not in self.allowed_tenants:
            raise InvalidIdToken("the ID token's tenant (tid) is not allowed")  # only configured tenants sign in

    async def identity_from(self, claims: VerifiedClaims, tokens: TokenResponse) -> Identity:
        return self.make_identity(claims, tokens, subject=self.subject_of(claims), email=self.email_of(claims),
                                  groups=self.group_names_for(await self.group_ids(claims)))

    def email_of(self, claims: VerifiedClaims) -> UpstreamEmail:
        """``email``, else ``preferred_username`` or ``upn`` when an address; verified only as ``email`` with
        ``xms_edov: true`` (Entra's "email domain owner verified": the user's tenant owns the domain)."""
        if "email" in self.settings.claims.model_fields_set:
            return UpstreamEmail(read.string(claims, self.claim_names.email), None)
        for name in ("email", "preferred_username", "upn"):
            value = read.string(claims, name)
            if value and "@" in value:
                vouched = name == "email" and claims.get("xms_edov") is True
                return UpstreamEmail(value, True if vouched else None)
        return UpstreamEmail(None, None)

    async def group_ids(self, claims: VerifiedClaims) -> tuple[str, ...]:
        """The ``groups`` claim, or Microsoft Graph's answer when the token reports group overage."""
        if not has_group_overage(claims):
            return read.groups(claims, self.claim_names.groups, idp_id=self.idp_id)
        object_id = read.string(claims, "oid")
        if object_id is None or not GUID.match(object_id):
            raise InvalidIdToken("the ID token reports group overage but has no object id (oid)")
        log.info("group overage; asking the directory", extra={"idp": self.idp_id})
        found = await self.group_directory.member_groups(str(claims["tid"]), object_id)
        return tuple(dict.fromkeys(g for g in found if isinstance(g, str) and g))

    def group_names_for(self, group_ids: Iterable[str]) -> tuple[str, ...]:
        """Object ids mapped to configured names; ids without a name pass through unchanged."""
        return tuple(dict.fromkeys(self.group_names.get(group_id.lower(), group_id) for group_id in group_ids))


# ---------------------------------------------------------------- Microsoft Graph


class GraphGroupDirectory:
    """``GroupDirectory`` on Microsoft Graph, as the broker's own application (client credentials).

    1. An app-only token from the user's tenant: ``POST {login}/{tid}/oauth2/v2.0/token`` with
       ``grant_type=client_credentials``, the broker's client id and secret and
       ``scope={graph_endpoint}/.default``; reused until shortly before it expires.
    2. ``POST {graph_endpoint}/v1.0/users/{oid}/getMemberObjects`` with ``{"securityEnabledOnly": false}``,
       following ``@odata.nextLink`` (same origin only, at most ``max_pages``).

    Needs the application permission ``GroupMember.Read.All`` (or ``Directory.Read.All``) with admin
    consent in each tenant. Every failure is ``UpstreamUnavailable``; tokens are never logged.
    """

    request_timeout: float = 10.0  # total, per request
    max_pages = 20
    token_margin = 60.0  # seconds before expiry an app token is no longer used
    max_cached_tokens = 256

    def __init__(self, http: httpx.AsyncClient, *, idp_id: str, issuer: EntraIssuer, client_id: str,
                 client_secret: str | None, graph_endpoint: str, clock: Callable[[], float] = time.time):
        self._http = UpstreamHttp(http, idp_id)
        self._idp_id = idp_id
        self._issuer = issuer
        self._client_id = client_id
        self._client_secret = client_secret
        self._graph = graph_endpoint.rstrip("/")
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}

    def __repr__(self) -> str:
        return f"<GraphGroupDirectory {self._idp_id!r} graph={self._graph!r}>"

    async def member_groups(self, tenant_id: str, object_id: str) -> list[str]:
        if not GUID.match(tenant_id) or not GUID.match(object_id):
            raise UpstreamUnavailable("Microsoft Graph: tenant or object id is not a GUID")  # ids go into URLs
        token = await self._app_token(tenant_id)
        url = f"{self._graph}/v1.0/users/{quote(object_id)}/getMemberObjects"
        page = await self._call("POST", url, token, json={"securityEnabledOnly": False})
        groups = _values(page)
        for _ in range(self.max_pages - 1):
            next_link = page.get("@odata.nextLink")
            if next_link is None:
                return groups
            page = await self._call("GET", self._same_origin(next_link), token)
            groups += _values(page)
        raise UpstreamUnavailable("Microsoft Graph: too many pages of groups")

    async def _app_token(self, tenant_id: str) -> str:
        cached = self._tokens.get(tenant_id)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        if self._client_secret is None:
            raise UpstreamUnavailable("Microsoft Graph: group overage needs the IdP's client_secret")
        form = {"grant_type": "client_credentials", "client_id": self._client_id,
                "client_secret": self._client_secret, "scope": f"{self._graph}/.default"}
        response = await self._http.post_form(self._issuer.token_endpoint(tenant_id), data=form, headers={},
                                              what="Graph token request", timeout=self.request_timeout)
        token, lifetime = _app_token(response)
        if len(self._tokens) >= self.max_cached_tokens:
            self._tokens.clear()
        self._tokens[tenant_id] = (token, self._clock() + lifetime - self.token_margin)
        return token

    async def _call(self, method: str, url: str, token: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"accept": "application/json", "authorization": f"Bearer {token}"}
        response = await self._http.request(method, url, what="Graph group lookup", timeout=self.request_timeout,
                                            headers=headers, **kwargs)
        if response.status_code != 200 or not isinstance(response.body, dict):
            log.warning("Microsoft Graph group lookup failed", extra={"idp": self._idp_id,
                                                                      "status": response.status_code})
            raise UpstreamUnavailable(_graph_failure(response))
        return response.body

    def _same_origin(self, next_link: object) -> str:
        """``@odata.nextLink`` is followed only on the configured Graph endpoint (no SSRF through a page)."""
        if not isinstance(next_link, str) or not next_link.startswith(self._graph + "/"):
            raise UpstreamUnavailable("Microsoft Graph: a next page link points elsewhere")
        return next_link


def _app_token(response: UpstreamResponse) -> tuple[str, float]:
    """The access token and its lifetime from a client credentials response (RFC 6749 §4.4.3)."""
    body = response.body if isinstance(response.body, dict) else {}
    token, lifetime = body.get("access_token"), body.get("expires_in")
    if response.status_code != 200 or not isinstance(token, str) or not token:
        code = error_from_response(body.get("error")).upstream_error  # RFC 6749 §5.2 charset, or invalid_response
        log.warning("Microsoft Graph token request failed", extra={"status": response.status_code, "error": code})
        raise UpstreamUnavailable(f"Microsoft Graph: no app token for the group lookup (HTTP "
                                  f"{response.status_code}, {code}); are the client id and secret right?")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or not 0 < lifetime < 86400:
        lifetime = DEFAULT_APP_TOKEN_LIFETIME
    return token, float(lifetime)


def _values(page: dict[str, Any]) -> list[str]:
    values = page.get("value")
    if not isinstance(values, list):
        raise UpstreamUnavailable("Microsoft Graph: the group lookup answer has no value list")
    return [v for v in values if isinstance(v, str) and v]


def _graph_failure(response: UpstreamResponse) -> str:
    if response.status_code in (401, 403):
        return (f"Microsoft Graph refused the group lookup (HTTP {response.status_code}); does the app have "
                "GroupMember.Read.All (application) with admin consent?")
    return f"Microsoft Graph group lookup failed (HTTP {response.status_code})"
