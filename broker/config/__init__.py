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

The package: ``types`` (value types each rule is written in once), ``models`` (one model per
section: a new setting is a field there), ``checks`` (rules across fields and the mode),
``sources`` (file, environment, defaults and flags; origins; secret files), ``provenance`` (where each
value came from and whether it differs from its default, for the console). Import from here.
"""

from broker.config.checks import check
from broker.config.models import (
    AddressLimit,
    AdminSettings,
    AssertionAudience,
    AuthorizationSettings,
    CimdSettings,
    DatabaseSettings,
    EndpointLimit,
    EntraSettings,
    FederationSettings,
    IdJagSettings,
    IdpClaimsSettings,
    IdpSettings,
    KeysSettings,
    LoggingSettings,
    MetricsSettings,
    Mode,
    RateLimitSettings,
    RegistrationSettings,
    ScimSettings,
    ScimToken,
    ServerSettings,
    Settings,
    SignalIssuer,
    SignalsSettings,
    TestIdpClient,
    TestIdpSettings,
    TestIdpUser,
    TokenSettings,
    TracingSettings,
    TrustedAssertionIssuer,
)
from broker.config.sources import ENV_PREFIX, NON_SETTING_ENV, load, read_file, read_secret_files
from broker.config.types import PLACEHOLDER_SECRETS, decode_kek, is_loopback_host, new_kek, parse_listen
from broker.config.validation import ConfigError

__all__ = [
    "ENV_PREFIX", "NON_SETTING_ENV", "PLACEHOLDER_SECRETS",
    "AddressLimit", "AdminSettings", "AssertionAudience", "AuthorizationSettings", "CimdSettings", "ConfigError",
    "DatabaseSettings", "EndpointLimit", "EntraSettings", "FederationSettings", "IdJagSettings",
    "IdpClaimsSettings", "IdpSettings", "KeysSettings", "LoggingSettings", "MetricsSettings", "Mode",
    "RateLimitSettings", "RegistrationSettings", "ScimSettings", "ScimToken", "ServerSettings", "Settings",
    "SignalIssuer", "SignalsSettings", "TestIdpClient", "TestIdpSettings", "TestIdpUser", "TokenSettings",
    "TracingSettings", "TrustedAssertionIssuer",
    "check", "decode_kek", "is_loopback_host", "load", "new_kek", "parse_listen", "read_file", "read_secret_files",
]
