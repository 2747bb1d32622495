"""Typed settings: a TOML file, overridden by ``BROKER_*`` environment variables.

Precedence, lowest first: built-in defaults, the defaults of ``broker dev`` (when run so),
the TOML file (``--config`` or ``BROKER_CONFIG``), environment variables. A key's
environment name is ``BROKER_`` + its dotted path upper-cased with ``__`` between parts:
``database.url`` -> ``BROKER_DATABASE__URL``, ``idps[0].client_secret`` ->
``BROKER_IDPS__0__CLIENT_SECRET``. Values that look like TOML arrays (``["a", "b"]``) are
parsed as such; everything else is a string that the field's type converts.

Every secret ``X`` can instead be read from a file named by ``X_file`` (containers mount
secrets as files). ``load()`` reports every problem at once, each naming its key, by
raising ``ConfigError``; nothing is read from or written to the database here.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

ENV_PREFIX = "BROKER_"
# Environment variables read by the command line, not settings keys.
NON_SETTING_ENV = {"BROKER_CONFIG"}
# Values from config.example.toml and the docs that must never run in production.
PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "password", "CHANGE-ME"}


class ConfigError(Exception):
    """One or more configuration problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class Mode(StrEnum):
    DEV = "dev"
    PRODUCTION = "production"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: SecretStr | None = None
    url_file: Path | None = None
    pool_size: int = Field(10, ge=1, le=200)
    max_overflow: int = Field(10, ge=0, le=200)
    pool_timeout: float = Field(5.0, gt=0, le=120)
    sqlite_busy_timeout_ms: int = Field(5000, ge=0, le=600_000)
    echo: bool = False


class KeysSettings(_Section):
    algorithm: Literal["ES256", "RS256"] = "ES256"
    key_encryption_key: SecretStr | None = None
    key_encryption_key_file: Path | None = None
    activation_delay: int = Field(3600, ge=0, le=30 * 86400)
    rsa_key_size: Literal[2048, 3072, 4096] = 3072


class TokenSettings(_Section):
    access_token_lifetime: int = Field(300, ge=30, le=86400)
    id_token_lifetime: int = Field(300, ge=30, le=86400)
    authorization_code_lifetime: int = Field(60, ge=10, le=600)
    refresh_token_idle_lifetime: int = Field(7 * 86400, ge=60)
    refresh_token_absolute_lifetime: int = Field(30 * 86400, ge=60)
    clock_skew: int = Field(60, ge=0, le=600)


class RegistrationSettings(_Section):
    enabled: bool = False
    require_approval: bool = False
    max_per_hour_per_address: int = Field(20, ge=1, le=100_000)


class AuthorizationSettings(_Section):
    login_timeout: int = Field(600, ge=60, le=3600)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    forwarded_allow_ips: str = "127.0.0.1"
    threads: int = Field(8, ge=1, le=256)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class MetricsSettings(_Section):
    """Prometheus metrics: off by default, so nothing new is exposed until an operator asks."""

    enabled: bool = False
    # Required on GET /metrics of the main port (Authorization: Bearer ...); unset: not served there.
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    # "HOST:PORT" of a separate listener for /metrics (e.g. "127.0.0.1:9464"); empty: none.
    listen: str = ""
    # Seconds between refreshes of each worker's process and pool gauges in multi-worker mode.
    refresh_interval: float = Field(5.0, ge=0.5, le=300)


class EndpointLimit(_Section):
    """Requests per fixed window, per key; 0 means unlimited."""

    window: int = Field(60, ge=1, le=86400)
    per_client: int = Field(0, ge=0, le=100_000_000)
    per_address: int = Field(0, ge=0, le=100_000_000)


class AddressLimit(_Section):
    window: int = Field(60, ge=1, le=86400)
    per_address: int = Field(0, ge=0, le=100_000_000)


class RateLimitSettings(_Section):
    """In-process fixed windows per worker (docs/operations.md); each limit is shared out among the workers."""

    enabled: bool = True
    token: EndpointLimit = EndpointLimit(per_client=6000, per_address=6000)
    authorize: EndpointLimit = EndpointLimit(per_client=3000, per_address=600)
    registration: AddressLimit = AddressLimit(per_address=60)
    scim: EndpointLimit = EndpointLimit(per_client=6000, per_address=6000)
    # Keys remembered per endpoint group and key kind within one window; past that, new keys pass unlimited.
    max_keys: int = Field(100_000, ge=100, le=10_000_000)


class TestIdpUser(_Section):
    username: str = Field(min_length=1)
    password: SecretStr
    email: str
    name: str = ""
    groups: list[str] = []


class TestIdpClient(_Section):
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    redirect_uris: list[str] = Field(min_length=1)
    # Its client_id at the resource authorization server, the ID-JAG's client_id; empty: the same client_id.
    resource_client_id: str = ""


class TestIdpSettings(_Section):
    enabled: bool = False
    users: list[TestIdpUser] = []
    clients: list[TestIdpClient] = []
    code_lifetime: int = Field(60, ge=10, le=600)
    refresh_token_lifetime: int = Field(86400, ge=60)
    # Issuers of the authorization servers it issues ID-JAGs for (token exchange); empty: exchange is off.
    id_jag_audiences: list[str] = []
    id_jag_lifetime: int = Field(300, ge=30, le=3600)


class IdpClaimsSettings(_Section):
    """Which ID-token claim carries what (generic OIDC; Okta and Entra have their own defaults)."""

    subject: str = "sub"
    email: str = "email"
    name: str = "name"
    groups: str = "groups"


class EntraSettings(_Section):
    # Multi-tenant apps: the tenants (tid) whose users may sign in; empty means only `tenant_id`.
    allowed_tenants: list[str] = []
    # Group object ids -> the names policy uses; ids not listed are passed through as ids.
    group_names: dict[str, str] = {}
    graph_endpoint: str = "https://graph.microsoft.com"


class IdpSettings(_Section):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    type: Literal["oidc", "okta", "entra", "test"]
    display_name: str = ""
    issuer: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    scopes: list[str] = ["openid", "email", "profile"]
    # Users whose login_hint or email is in one of these domains are sent to this IdP.
    email_domains: list[str] = []
    claims: IdpClaimsSettings = IdpClaimsSettings()
    entra: EntraSettings = EntraSettings()
    # Keep the IdP's refresh token (encrypted) to re-check the user upstream at refresh.
    store_refresh_token: bool = True
    # At every refresh at the broker, first refresh upstream; a refusal there ends the user's sessions.
    check_upstream_on_refresh: bool = False


class FederationSettings(_Section):
    # IdP ids whose *verified* emails identify the same person: a user signing in through any of
    # them with the same verified email is one broker user. Empty: accounts never merge by email.
    link_by_verified_email: list[str] = []


class CimdSettings(_Section):
    """Client ID Metadata Documents: https URLs as client ids, fetched by the broker (an SSRF surface)."""

    enabled: bool = True
    # Only these hosts may serve client metadata documents (empty: any public host).
    allowed_hosts: list[str] = []
    # These hosts never may (checked first).
    denied_hosts: list[str] = []
    max_document_bytes: int = Field(5120, ge=512, le=65536)
    fetch_timeout: float = Field(5.0, gt=0, le=30)
    # Longest a fetched document is reused, whatever its cache headers say (seconds).
    max_cache_seconds: int = Field(3600, ge=0, le=86400)
    # Extra CA certificates (PEM) trusted when fetching documents, e.g. an internal CA.
    ca_file: Path | None = None
    # DEV/TEST ONLY (production refuses it): allow documents on loopback addresses.
    allow_loopback: bool = False


class ScimToken(_Section):
    """A bearer token one IdP's SCIM client uses; users and groups it provisions belong to that IdP."""

    idp: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    token: SecretStr | None = None
    token_file: Path | None = None


class ScimSettings(_Section):
    enabled: bool = False
    tokens: list[ScimToken] = []
    max_page_size: int = Field(200, ge=1, le=1000)


class SignalIssuer(_Section):
    """A trusted sender of signed security events (SSF transmitter, or Universal Logout caller)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    issuer: str
    jwks_uri: str
    # The IdP whose subjects (iss_sub) these events name; emails are matched across all users.
    idp: str | None = None
    algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]] = ["RS256", "ES256"]


class SignalsSettings(_Section):
    # Shared Signals (RFC 8935 push) receiver at /ssf/events.
    ssf_transmitters: list[SignalIssuer] = []
    # Global Token Revocation (Okta Universal Logout) receiver at /global-logout.
    logout_issuers: list[SignalIssuer] = []
    # The `aud` the events must carry (default: the broker's issuer).
    audience: str = ""


class TrustedAssertionIssuer(_Section):
    """An enterprise IdP whose ID-JAGs the broker redeems with the JWT bearer grant (RFC 7523)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    issuer: str
    jwks_uri: str
    algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]] = ["RS256", "ES256"]
    tenant: str = ""
    idp: str | None = None
    link_by_email: bool = False
    provision_users: bool = False


class AssertionAudience(_Section):
    """A resource authorization server this broker issues ID-JAGs for (RFC 8693 token exchange)."""

    issuer: str
    resources: list[str] = Field(min_length=1)
    clients: dict[str, str] = {}


class IdJagSettings(_Section):
    """Enterprise-Managed Authorization: the broker as resource AS and as IdP (docs/enterprise-managed.md)."""

    trusted_issuers: list[TrustedAssertionIssuer] = []
    audiences: list[AssertionAudience] = []
    lifetime: int = Field(300, ge=30, le=3600)
    max_assertion_lifetime: int = Field(600, ge=60, le=86400)


class AdminSettings(_Section):
    """The admin console at /admin: roles from the IdP's groups, and how long a console session lives."""

    # Members of any of these groups get the role: admin (everything), security (users, offboarding,
    # audit, read-only policy), auditor (read-only everywhere). No matching group: no console.
    admin_groups: list[str] = []
    security_groups: list[str] = []
    auditor_groups: list[str] = []
    session_idle_timeout: int = Field(1800, ge=60, le=86400)
    session_lifetime: int = Field(28800, ge=300, le=7 * 86400)


class Settings(_Section):
    mode: Mode = Mode.PRODUCTION
    issuer: str = ""
    data_dir: Path = Path("var")
    database: DatabaseSettings = DatabaseSettings()
    keys: KeysSettings = KeysSettings()
    tokens: TokenSettings = TokenSettings()
    authorization: AuthorizationSettings = AuthorizationSettings()
    registration: RegistrationSettings = RegistrationSettings()
    server: ServerSettings = ServerSettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    testidp: TestIdpSettings = TestIdpSettings()
    idps: list[IdpSettings] = []
    federation: FederationSettings = FederationSettings()
    cimd: CimdSettings = CimdSettings()
    scim: ScimSettings = ScimSettings()
    signals: SignalsSettings = SignalsSettings()
    admin: AdminSettings = AdminSettings()
    id_jag: IdJagSettings = IdJagSettings()

    @property
    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'broker.db').as_posix()}"

    @property
    def longest_jwt_lifetime(self) -> int:
        """The longest a JWT signed by the broker stays valid: retired keys stay published this long."""
        lifetimes = [self.tokens.access_token_lifetime, self.tokens.id_token_lifetime]
        if self.id_jag.audiences:
            lifetimes.append(self.id_jag.lifetime)  # ID-JAGs this broker signs for other servers
        return max(lifetimes) + self.tokens.clock_skew

    def key_encryption_key(self) -> bytes | None:
        """The 32-byte key-encryption key, decoded; None when not configured."""
        if self.keys.key_encryption_key is None:
            return None
        return decode_kek(self.keys.key_encryption_key.get_secret_value())


def decode_kek(text: str) -> bytes:
    """Decode a key-encryption key given as base64 (standard or url-safe) or 64 hex digits."""
    text = text.strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    try:
        raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be 32 random bytes, base64- or hex-encoded") from exc
    if len(raw) != 32:
        raise ValueError(f"must decode to 32 bytes, not {len(raw)}")
    return raw


def new_kek() -> str:
    """A fresh key-encryption key in the form ``decode_kek`` reads."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


# ---------------------------------------------------------------- loading


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build validated settings; raise ``ConfigError`` listing every problem.

    ``defaults`` sit under the file (``broker dev`` uses them), ``overrides`` over the
    environment (command-line flags such as ``--data-dir``).
    """
    env = os.environ if env is None else env
    origins: dict[str, str] = {}
    raw = _deep_copy(defaults or {})
    if path is not None:
        _merge(raw, _read_toml(path), origins, f"{path}")
    problems = _merge_env(raw, env, origins)
    _merge(raw, _deep_copy(overrides or {}), origins, "command line")
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(problems + _describe(exc, origins)) from None
    settings, file_problems = _read_secret_files(settings)
    problems += file_problems + check(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file {path}: not found"]) from None
    except OSError as exc:
        raise ConfigError([f"config file {path}: cannot be read ({exc.strerror})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path}: not valid TOML: {exc}"]) from None


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _merge(base: dict[str, Any], update: Mapping[str, Any], origins: dict[str, str], origin: str,
           prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, origins, origin, dotted + ".")
        else:
            base[key] = _deep_copy(value)
            origins[dotted] = origin


def _merge_env(raw: dict[str, Any], env: Mapping[str, str], origins: dict[str, str]) -> list[str]:
    problems = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if not all(parts):
            problems.append(f"{name}: malformed name (parts are separated by a double underscore)")
            continue
        try:
            _set_path(raw, parts, _env_value(env[name]))
        except (KeyError, IndexError, TypeError):
            problems.append(f"{name}: {'.'.join(parts)} does not name a settings key")
            continue
        origins[_dotted(parts)] = f"environment variable {name}"
    return problems


def _env_value(text: str) -> Any:
    if text.startswith("["):
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            return text
    return text


def _set_path(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    node: Any = raw
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def _dotted(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(exc: ValidationError, origins: Mapping[str, str]) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = _dotted(loc)
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        origin = _origin_of(loc, origins)
        lines.append(f"{key}: {msg}" + (f" (from {origin})" if origin else ""))
    return lines


def _origin_of(loc: tuple[Any, ...], origins: Mapping[str, str]) -> str | None:
    path = ".".join(str(p) for p in loc)
    below = [origin for key, origin in origins.items() if key.startswith(path + ".")]
    if below and path not in origins:
        return below[0]
    while path:
        if path in origins:
            return origins[path]
        path = path.rpartition(".")[0]
    return None


def _read_secret_files(settings: Settings) -> tuple[Settings, list[str]]:
    """Replace each ``X`` by the contents of ``X_file`` where the latter is set."""
    problems: list[str] = []

    def resolve(section: BaseModel, key: str, field: str) -> BaseModel:
        file = getattr(section, f"{field}_file")
        if file is None:
            return section
        if getattr(section, field) is not None:
            problems.append(f"{key}.{field}: set either {field} or {field}_file, not both")
            return section
        try:
            text = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{key}.{field}_file: cannot read {file} ({getattr(exc, 'strerror', exc)})")
            return section
        return section.model_copy(update={field: SecretStr(text)})

    updates: dict[str, Any] = {
        "database": resolve(settings.database, "database", "url"),
        "keys": resolve(settings.keys, "keys", "key_encryption_key"),
        "idps": [resolve(idp, f"idps[{i}]", "client_secret") for i, idp in enumerate(settings.idps)],
        "scim": settings.scim.model_copy(update={"tokens": [
            resolve(t, f"scim.tokens[{i}]", "token") for i, t in enumerate(settings.scim.tokens)]}),
        "metrics": resolve(settings.metrics, "metrics", "bearer_token"),
    }
    return settings.model_copy(update=updates), problems


# ---------------------------------------------------------------- policy checks


def check(settings: Settings) -> list[str]:
    """Cross-field and mode checks; one line per problem."""
    problems = _check_issuer(settings)
    problems += _check_kek(settings)
    problems += _check_idps(settings)
    problems += _check_lifetimes(settings)
    problems += _check_id_jag(settings)
    problems += _check_metrics(settings.metrics)
    if settings.mode is Mode.PRODUCTION:
        problems += _check_production(settings)
    return problems


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_issuer(settings: Settings) -> list[str]:
    issuer = settings.issuer
    if not issuer:
        return ["issuer: required (the broker's public base URL, e.g. https://mcp-auth.example.com)"]
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname:
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
        decode_kek(settings.keys.key_encryption_key.get_secret_value())
    except ValueError as exc:
        return [f"keys.key_encryption_key: {exc}"]
    return []


_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ENTRA_PATH = re.compile(r"^/([0-9a-f-]{36}|organizations|common)/v2\.0$")
_OKTA_PATH = re.compile(r"^(/oauth2/(?!v1$)[A-Za-z0-9_-]+)?$")


def _check_idps(settings: Settings) -> list[str]:
    problems = []
    seen: set[str] = set()
    for i, idp in enumerate(settings.idps):
        if idp.id in seen:
            problems.append(f"idps[{i}].id: {idp.id!r} is used by another IdP")
        seen.add(idp.id)
        parts = urlsplit(idp.issuer)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            problems.append(f"idps[{i}].issuer: {idp.issuer!r} is not an http(s) URL")
        elif parts.scheme == "http" and not is_loopback_host(parts.hostname) and idp.type in ("okta", "entra"):
            problems.append(f"idps[{i}].issuer: {idp.type} issuers are https")
        elif idp.type == "okta" and not _OKTA_PATH.match(parts.path):
            problems.append(f"idps[{i}].issuer: an Okta issuer is https://ORG.okta.com or "
                            "https://ORG.okta.com/oauth2/AUTH_SERVER_ID (no trailing slash)")
        elif idp.type == "entra":
            problems += _check_entra(i, idp, parts.path)
        if idp.type == "test" and not settings.testidp.enabled:
            problems.append(f"idps[{i}].type: 'test' needs testidp.enabled = true")
    known = {idp.id for idp in settings.idps}
    for i, token in enumerate(settings.scim.tokens):
        if token.idp not in known:
            problems.append(f"scim.tokens[{i}].idp: {token.idp!r} is not a configured IdP id")
        secret = token.token.get_secret_value().strip() if token.token else ""
        if secret in PLACEHOLDER_SECRETS:
            problems.append(f"scim.tokens[{i}].token: missing or a placeholder (`broker keys new-kek` makes one)")
        elif len(secret) < 32:
            problems.append(f"scim.tokens[{i}].token: at least 32 random characters (`broker keys new-kek`)")
    for name in settings.federation.link_by_verified_email:
        if name not in known:
            problems.append(f"federation.link_by_verified_email: {name!r} is not a configured IdP id")
    return problems


def _check_id_jag(settings: Settings) -> list[str]:
    """The broker never trusts itself as an ID-JAG issuer, nor issues ID-JAGs for itself (SPEC-NOTES 4)."""
    problems = []
    known = {idp.id for idp in settings.idps}
    ids: set[str] = set()
    for i, trusted in enumerate(settings.id_jag.trusted_issuers):
        key = f"id_jag.trusted_issuers[{i}]"
        if trusted.id in ids:
            problems.append(f"{key}.id: {trusted.id!r} is used by another trusted issuer")
        ids.add(trusted.id)
        if trusted.issuer == settings.issuer:
            problems.append(f"{key}.issuer: the broker never redeems ID-JAGs it issued itself")
        for field, url in (("issuer", trusted.issuer), ("jwks_uri", trusted.jwks_uri)):
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                problems.append(f"{key}.{field}: {url!r} is not an http(s) URL")
            elif parts.scheme == "http" and not is_loopback_host(parts.hostname):
                problems.append(f"{key}.{field}: must be https (loopback excepted)")
        if trusted.idp is not None and trusted.idp not in known:
            problems.append(f"{key}.idp: {trusted.idp!r} is not a configured IdP id")
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
    secret = metrics.bearer_token.get_secret_value().strip() if metrics.bearer_token else None
    if secret is not None and (secret in PLACEHOLDER_SECRETS or len(secret) < 32):
        problems.append("metrics.bearer_token: at least 32 random characters (`broker keys new-kek` makes one)")
    if metrics.enabled and secret is None and not metrics.listen:
        problems.append("metrics.enabled: set metrics.bearer_token (GET /metrics on the main port), "
                        "metrics.listen (a separate port), or both")
    return problems


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) as (host, port); ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host, int(port)


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


def _check_lifetimes(settings: Settings) -> list[str]:
    t = settings.tokens
    if t.refresh_token_idle_lifetime > t.refresh_token_absolute_lifetime:
        return ["tokens.refresh_token_idle_lifetime: must not exceed tokens.refresh_token_absolute_lifetime"]
    return []


def _check_production(settings: Settings) -> list[str]:
    problems = []
    parts = urlsplit(settings.issuer)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        problems.append("issuer: production mode requires https (http is allowed only on loopback)")
    if settings.keys.key_encryption_key is None:
        problems.append("keys.key_encryption_key: required in production mode "
                        "(set BROKER_KEYS__KEY_ENCRYPTION_KEY or keys.key_encryption_key_file; "
                        "`broker keys new-kek` prints a fresh one)")
    if settings.testidp.enabled:
        problems.append("testidp.enabled: the built-in test IdP is refused in production mode")
    if settings.cimd.allow_loopback:
        problems.append("cimd.allow_loopback: fetching client metadata from loopback is refused in production mode")
    for i, idp in enumerate(settings.idps):
        if idp.type == "test":
            problems.append(f"idps[{i}].type: the test IdP is refused in production mode")
        secret = idp.client_secret.get_secret_value().strip() if idp.client_secret else ""
        if secret in PLACEHOLDER_SECRETS:
            problems.append(f"idps[{i}].client_secret: missing or a placeholder in production mode")
    # Whatever vouches for identities or ends sessions is fetched over TLS (loopback excepted).
    urls = [(f"idps[{i}].issuer", idp.issuer) for i, idp in enumerate(settings.idps)
            if idp.type not in ("okta", "entra")]  # those are https in every mode (_check_idps)
    for kind in ("ssf_transmitters", "logout_issuers"):
        urls += [(f"signals.{kind}[{i}].jwks_uri", sender.jwks_uri)
                 for i, sender in enumerate(getattr(settings.signals, kind))]
    for key, url in urls:
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            problems.append(f"{key}: production mode requires https (http is allowed only on loopback)")
    return problems
