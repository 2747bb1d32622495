"""The settings' shape: one model per section, with types, bounds and defaults.

A new setting is a field on its section's model here (with a comment when the name does not say it all)
and a commented line in config.example.toml; a rule involving several fields goes to ``checks``.
Secrets come in pairs, ``X: Secret`` and ``X_file: SecretFile``: ``sources`` reads the file into ``X``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from broker.config.types import (
    DEFAULT_DPOP_ALGORITHMS,
    DEFAULT_JWS_ALGORITHMS,
    Identifier,
    JwsAlgorithm,
    JwsAlgorithms,
    LogLevel,
    decode_kek,
    split_keks,
)

# A secret given in the settings, or read from the file named by its ``_file`` sibling.
Secret = SecretStr | None
SecretFile = Path | None


class Mode(StrEnum):
    DEV = "dev"
    PRODUCTION = "production"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: Secret = None
    url_file: SecretFile = None
    pool_size: int = Field(10, ge=1, le=200)
    max_overflow: int = Field(10, ge=0, le=200)
    pool_timeout: float = Field(5.0, gt=0, le=120)
    sqlite_busy_timeout_ms: int = Field(5000, ge=0, le=600_000)
    echo: bool = False


class KeysSettings(_Section):
    algorithm: Literal["ES256", "RS256"] = "ES256"
    key_encryption_key: Secret = None
    key_encryption_key_file: SecretFile = None
    # Key-encryption keys being rotated out, comma-separated: they decrypt, never encrypt.
    previous_key_encryption_keys: Secret = None
    previous_key_encryption_keys_file: SecretFile = None
    activation_delay: int = Field(3600, ge=0, le=30 * 86400)
    rotate_every: int = Field(0, ge=0, le=366 * 86400)  # seconds; 0: only `broker keys rotate` rotates
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
    # The request line and headers together, bytes; larger gets 431 before anything reads them.
    max_header_bytes: int = Field(16 * 1024, ge=4096, le=1024 * 1024)
    # Seconds an idle keep-alive connection stays open after a response (uvicorn's timeout_keep_alive).
    keep_alive_timeout: int = Field(5, ge=1, le=3600)
    forwarded_allow_ips: str = "127.0.0.1"
    threads: int = Field(8, ge=1, le=256)
    # SIGTERM to exit, at most this many seconds: the drain, then in-flight requests finish (or are cut).
    shutdown_timeout: float = Field(30.0, ge=1, le=3600)
    # Seconds after SIGTERM during which /readyz answers 503 while everything else is still served.
    shutdown_drain: float = Field(5.0, ge=0, le=3600)


class LoggingSettings(_Section):
    level: LogLevel = "INFO"
    format: Literal["json", "text"] = "json"


class MetricsSettings(_Section):
    """Prometheus metrics: off by default, so nothing new is exposed until an operator asks."""

    enabled: bool = False
    # Required on GET /metrics of the main port (Authorization: Bearer ...); unset: not served there.
    bearer_token: Secret = None
    bearer_token_file: SecretFile = None
    # "HOST:PORT" of a separate listener for /metrics (e.g. "127.0.0.1:9464"); empty: none.
    listen: str = ""
    # Seconds between refreshes of each worker's process and pool gauges in multi-worker mode.
    refresh_interval: float = Field(5.0, ge=0.5, le=300)


class TracingSettings(_Section):
    """OpenTelemetry traces (the otel extra): off by default, and then nothing of OpenTelemetry is loaded."""

    enabled: bool = False
    # "otlp" (OTLP over HTTP) or "console" (spans as JSON on stdout, to try it out).
    exporter: Literal["otlp", "console"] = "otlp"
    # The OTLP/HTTP traces URL; empty: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else
    # http://localhost:4318/v1/traces.
    endpoint: str = ""
    service_name: str = "mcp-auth-broker"
    # Share of the traces started here that are kept (a caller's traceparent decides for its own).
    sample_ratio: float = Field(1.0, ge=0, le=1)


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
    # /revoke: public clients revoke with a client_id alone, and each revocation is a feed entry
    revocation: EndpointLimit = EndpointLimit(per_client=600, per_address=600)
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
    id: Identifier
    type: Literal["oidc", "okta", "entra", "test"]
    display_name: str = ""
    issuer: str
    client_id: str = Field(min_length=1)
    client_secret: Secret = None
    client_secret_file: SecretFile = None
    scopes: list[str] = ["openid", "email", "profile"]
    # Users whose login_hint or email is in one of these domains are sent to this IdP.
    email_domains: list[str] = []
    claims: IdpClaimsSettings = IdpClaimsSettings()
    entra: EntraSettings = EntraSettings()
    # Keep the IdP's refresh token (encrypted) to re-check the user upstream at refresh.
    store_refresh_token: bool = True
    # At every refresh at the broker, first refresh upstream; a refusal there ends the user's sessions.
    check_upstream_on_refresh: bool = False
    # With that check on, prompt=consent goes with offline_access (OIDC Core §11); None: the connector's
    # default (generic OIDC: yes; Okta, Entra ID, the test IdP: no).
    offline_access_consent: bool | None = None
    # The userinfo endpoint (OIDC Core §5.3): "auto" asks it when the ID token lacks a mapped claim
    # (email, name, groups); "always" at every sign-in; "never".
    userinfo: Literal["auto", "always", "never"] = "auto"


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

    idp: Identifier
    token: Secret = None
    token_file: SecretFile = None


class ScimSettings(_Section):
    enabled: bool = False
    tokens: list[ScimToken] = []
    max_page_size: int = Field(200, ge=1, le=1000)


class JwtIssuer(_Section):
    """Someone whose signed JWTs the broker accepts, with the keys at ``jwks_uri``."""

    id: Identifier
    issuer: str
    jwks_uri: str
    algorithms: JwsAlgorithms = DEFAULT_JWS_ALGORITHMS


class SignalIssuer(JwtIssuer):
    """A trusted sender of signed security events (SSF transmitter, or Universal Logout caller)."""

    # The IdP this sender speaks for: its events name that IdP's users only, in every subject format
    # (broker.lifecycle.signals.subject_users); unset, the users of every configured IdP.
    idp: str | None = None


class SignalsSettings(_Section):
    # Shared Signals (RFC 8935 push) receiver at /ssf/events.
    ssf_transmitters: list[SignalIssuer] = []
    # Global Token Revocation (Okta Universal Logout) receiver at /global-logout.
    logout_issuers: list[SignalIssuer] = []
    # The `aud` the events must carry (default: the broker's issuer).
    audience: str = ""


class TrustedAssertionIssuer(JwtIssuer):
    """An enterprise IdP whose ID-JAGs the broker redeems with the JWT bearer grant (RFC 7523)."""

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


class DpopSettings(_Section):
    """DPoP (RFC 9449) at the token endpoint: which proofs count, and whether a server nonce is required."""

    algorithms: list[JwsAlgorithm] = Field(default_factory=lambda: list(DEFAULT_DPOP_ALGORITHMS), min_length=1)
    iat_window: int = Field(300, ge=5, le=3600)  # seconds either side of now a proof's iat may be
    require_nonce: bool = False
    nonce_lifetime: int = Field(300, ge=10, le=3600)


class AdminSettings(_Section):
    """The admin console at /admin: roles from the IdP's groups, and how long a console session lives."""

    # Members of any of these groups get the role: admin (everything), security (users, offboarding,
    # audit, read-only policy), auditor (read-only everywhere). No matching group: no console.
    admin_groups: list[str] = []
    security_groups: list[str] = []
    auditor_groups: list[str] = []
    # The IdPs whose groups give console roles; empty: every configured IdP. A group name at one IdP says
    # nothing about another's, so production mode requires this list when several IdPs are configured.
    idps: list[str] = []
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
    tracing: TracingSettings = TracingSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    testidp: TestIdpSettings = TestIdpSettings()
    idps: list[IdpSettings] = []
    federation: FederationSettings = FederationSettings()
    cimd: CimdSettings = CimdSettings()
    scim: ScimSettings = ScimSettings()
    signals: SignalsSettings = SignalsSettings()
    admin: AdminSettings = AdminSettings()
    id_jag: IdJagSettings = IdJagSettings()
    dpop: DpopSettings = DpopSettings()
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)  # key -> the layer that set it (provenance)

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

    def key_encryption_keys(self) -> list[bytes]:
        """The current key-encryption key (which encrypts), then the previous ones (which only decrypt);
        empty when none is configured."""
        current = self.key_encryption_key()
        previous = self.keys.previous_key_encryption_keys
        olds = [decode_kek(text) for text in split_keks(previous.get_secret_value())] if previous else []
        return [current, *olds] if current is not None else []
