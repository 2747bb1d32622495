"""Rules that involve several settings, or the mode: one line per problem, each naming its key."""

from __future__ import annotations

import re
from collections.abc import Collection

from broker.config.models import IdpSettings, MetricsSettings, Mode, Settings
from broker.config.types import (
    PLACEHOLDER_SECRETS,
    decode_kek,
    http_url,
    is_plain_http_off_loopback,
    parse_listen,
    split_keks,
    weak_secret,
)

HTTPS_IN_PRODUCTION = "production mode requires https (http is allowed only on loopback)"


def check(settings: Settings, also_known_idps: Collection[str] = ()) -> list[str]:
    """Cross-field and mode checks; one line per problem.

    ``also_known_idps``: ids of IdP entries refused before these checks, so references to them are not
    reported as unknown as well.
    """
    known = {idp.id for idp in settings.idps} | set(also_known_idps)
    problems = _check_issuer(settings)
    problems += _check_kek(settings)
    problems += _check_idps(settings, known)
    problems += _check_scim(settings, known)
    problems += [problem for idp in settings.admin.idps for problem in _unknown_idp("admin.idps", idp, known)]
    problems += _check_lifetimes(settings)
    problems += _check_id_jag(settings, known)
    problems += _check_metrics(settings.metrics)
    if settings.mode is Mode.PRODUCTION:
        problems += _check_production(settings)
    return problems


def _unknown_idp(key: str, idp: str | None, known: set[str]) -> list[str]:
    if idp is None or idp in known:
        return []
    return [f"{key}: {idp!r} is not a configured IdP id"]


def _check_issuer(settings: Settings) -> list[str]:
    issuer = settings.issuer
    if not issuer:
        return ["issuer: required (the broker's public base URL, e.g. https://mcp-auth.example.com)"]
    parts = http_url(issuer)
    if parts is None:
        return [f"issuer: {issuer!r} is not an absolute http(s) URL"]
    problems = []
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        problems.append("issuer: must not have a query or fragment (RFC 8414 §2)")
    if issuer.endswith("/"):
        problems.append("issuer: must not end with '/' (clients compare it byte for byte)")
    if parts.username or parts.password:
        problems.append("issuer: must not contain credentials")
    return problems


def _check_kek(settings: Settings) -> list[str]:
    if settings.keys.key_encryption_key is None:
        return []
    if settings.keys.key_encryption_key.get_secret_value().strip() in PLACEHOLDER_SECRETS:
        return ["keys.key_encryption_key: is a placeholder; generate one with `broker keys new-kek`"]
    try:
        current = decode_kek(settings.keys.key_encryption_key.get_secret_value())
    except ValueError as exc:
        return [f"keys.key_encryption_key: {exc}"]
    return _check_previous_keks(settings, current)


def _check_previous_keks(settings: Settings, current: bytes) -> list[str]:
    previous = settings.keys.previous_key_encryption_keys
    problems = []
    for i, text in enumerate(split_keks(previous.get_secret_value()) if previous else []):
        try:
            if decode_kek(text) == current:
                problems.append(f"keys.previous_key_encryption_keys[{i}]: is the current key_encryption_key")
        except ValueError as exc:
            problems.append(f"keys.previous_key_encryption_keys[{i}]: {exc}")
    return problems


_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ENTRA_PATH = re.compile(r"^/([0-9a-f-]{36}|organizations|common)/v2\.0$")
_OKTA_PATH = re.compile(r"^(/oauth2/(?!v1$)[A-Za-z0-9_-]+)?$")


def _check_idps(settings: Settings, known: set[str]) -> list[str]:
    problems = []
    seen: set[str] = set()
    for i, idp in enumerate(settings.idps):
        if idp.id in seen:
            problems.append(f"idps[{i}].id: {idp.id!r} is used by another IdP")
        seen.add(idp.id)
        problems += _check_idp_issuer(i, idp)
        if idp.type == "test" and not settings.testidp.enabled:
            problems.append(f"idps[{i}].type: 'test' needs testidp.enabled = true")
        if idp.check_upstream_on_refresh and not idp.store_refresh_token:
            problems.append(f"idps[{i}].check_upstream_on_refresh: needs store_refresh_token = true (the check "
                            "uses the IdP's refresh token)")
    for name in settings.federation.link_by_verified_email:
        problems += _unknown_idp("federation.link_by_verified_email", name, known)
    return problems


def _check_idp_issuer(i: int, idp: IdpSettings) -> list[str]:
    parts = http_url(idp.issuer)
    if parts is None:
        return [f"idps[{i}].issuer: {idp.issuer!r} is not an http(s) URL"]
    if idp.type in ("okta", "entra") and is_plain_http_off_loopback(idp.issuer):
        return [f"idps[{i}].issuer: {idp.type} issuers are https"]
    if idp.type == "okta" and not _OKTA_PATH.match(parts.path):
        return [f"idps[{i}].issuer: an Okta issuer is https://ORG.okta.com or "
                "https://ORG.okta.com/oauth2/AUTH_SERVER_ID (no trailing slash)"]
    if idp.type == "entra":
        return _check_entra(i, idp, parts.path)
    return []


def _check_entra(i: int, idp: IdpSettings, path: str) -> list[str]:
    match = _ENTRA_PATH.match(path)
    if match is None:
        return [f"idps[{i}].issuer: an Entra ID issuer is https://login.microsoftonline.com/TENANT_ID/v2.0 "
                "(or /organizations/v2.0 with entra.allowed_tenants)"]
    tenant, allowed = match.group(1), idp.entra.allowed_tenants
    problems = [f"idps[{i}].entra.allowed_tenants: {t!r} is not a tenant id (a lower-case GUID)"
                for t in allowed if not _GUID.match(t)]
    if tenant in ("organizations", "common") and not allowed:
        problems.append(f"idps[{i}].entra.allowed_tenants: a multi-tenant issuer needs the tenants allowed in")
    elif _GUID.match(tenant) and set(allowed) - {tenant}:
        problems.append(f"idps[{i}].entra.allowed_tenants: a single-tenant issuer admits only its own tenant")
    return problems


def _check_scim(settings: Settings, known: set[str]) -> list[str]:
    if not settings.scim.enabled:
        return []  # a section that is off needs no secrets: nothing reads its tokens
    problems = []
    for i, token in enumerate(settings.scim.tokens):
        problems += _unknown_idp(f"scim.tokens[{i}].idp", token.idp, known)
        secret = token.token.get_secret_value().strip() if token.token else ""
        if secret in PLACEHOLDER_SECRETS:
            problems.append(f"scim.tokens[{i}].token: missing or a placeholder (`broker keys new-kek` makes one)")
        elif weak_secret(secret):
            problems.append(f"scim.tokens[{i}].token: at least 32 random characters (`broker keys new-kek`)")
    return problems


def _check_id_jag(settings: Settings, known: set[str]) -> list[str]:
    """The broker never trusts itself as an ID-JAG issuer, nor issues ID-JAGs for itself (ID-JAG draft: two parties)."""
    problems = []
    ids: set[str] = set()
    for i, trusted in enumerate(settings.id_jag.trusted_issuers):
        key = f"id_jag.trusted_issuers[{i}]"
        if trusted.id in ids:
            problems.append(f"{key}.id: {trusted.id!r} is used by another trusted issuer")
        ids.add(trusted.id)
        if trusted.issuer == settings.issuer:
            problems.append(f"{key}.issuer: the broker never redeems ID-JAGs it issued itself")
        for field, url in (("issuer", trusted.issuer), ("jwks_uri", trusted.jwks_uri)):
            if http_url(url) is None:
                problems.append(f"{key}.{field}: {url!r} is not an http(s) URL")
            elif is_plain_http_off_loopback(url):
                problems.append(f"{key}.{field}: must be https (loopback excepted)")
        problems += _unknown_idp(f"{key}.idp", trusted.idp, known)
    for i, audience in enumerate(settings.id_jag.audiences):
        if audience.issuer == settings.issuer:
            problems.append(f"id_jag.audiences[{i}].issuer: the broker never issues ID-JAGs for itself")
    return problems


def _check_metrics(metrics: MetricsSettings) -> list[str]:
    problems = []
    if metrics.listen:
        try:
            parse_listen(metrics.listen)
        except ValueError as exc:
            problems.append(f"metrics.listen: {exc}")
    secret = metrics.bearer_token.get_secret_value() if metrics.bearer_token else None
    if metrics.enabled and secret is not None and weak_secret(secret):
        problems.append("metrics.bearer_token: at least 32 random characters (`broker keys new-kek` makes one)")
    if metrics.enabled and secret is None and not metrics.listen:
        problems.append("metrics.enabled: set metrics.bearer_token (GET /metrics on the main port), "
                        "metrics.listen (a separate port), or both")
    return problems


def _check_lifetimes(settings: Settings) -> list[str]:
    t = settings.tokens
    if t.refresh_token_idle_lifetime > t.refresh_token_absolute_lifetime:
        return ["tokens.refresh_token_idle_lifetime: must not exceed tokens.refresh_token_absolute_lifetime"]
    return []


def _check_production(settings: Settings) -> list[str]:
    problems = []
    if is_plain_http_off_loopback(settings.issuer):
        problems.append(f"issuer: {HTTPS_IN_PRODUCTION}")
    if settings.keys.key_encryption_key is None:
        problems.append("keys.key_encryption_key: required in production mode "
                        "(set BROKER_KEYS__KEY_ENCRYPTION_KEY or keys.key_encryption_key_file; "
                        "`broker keys new-kek` prints a fresh one)")
    if settings.testidp.enabled:
        problems.append("testidp.enabled: the built-in test IdP is refused in production mode")
    if settings.cimd.allow_loopback:
        problems.append("cimd.allow_loopback: fetching client metadata from loopback is refused in production mode")
    if len(settings.idps) > 1 and not settings.admin.idps and _console_groups(settings):
        problems.append("admin.idps: several IdPs are configured; name those whose groups give console roles "
                        "(another IdP could send a group of the same name)")
    for i, idp in enumerate(settings.idps):
        if idp.type == "test":
            problems.append(f"idps[{i}].type: the test IdP is refused in production mode")
        secret = idp.client_secret.get_secret_value().strip() if idp.client_secret else ""
        if secret in PLACEHOLDER_SECRETS:
            problems.append(f"idps[{i}].client_secret: missing or a placeholder in production mode")
    return problems + [f"{key}: {HTTPS_IN_PRODUCTION}" for key, url in _fetched_over_tls(settings)
                       if is_plain_http_off_loopback(url)]


def _console_groups(settings: Settings) -> bool:
    admin = settings.admin
    return bool(admin.admin_groups or admin.security_groups or admin.auditor_groups)


def _fetched_over_tls(settings: Settings) -> list[tuple[str, str]]:
    """Whatever vouches for identities or ends sessions is fetched over TLS (loopback excepted)."""
    urls = [(f"idps[{i}].issuer", idp.issuer) for i, idp in enumerate(settings.idps)
            if idp.type not in ("okta", "entra")]  # those are https in every mode (_check_idp_issuer)
    for kind in ("ssf_transmitters", "logout_issuers"):
        urls += [(f"signals.{kind}[{i}].jwks_uri", sender.jwks_uri)
                 for i, sender in enumerate(getattr(settings.signals, kind))]
    return urls
