"""Authorization server metadata (RFC 8414), the document MCP clients discover the broker by."""

from __future__ import annotations

from typing import Any

from broker.config import Settings
from broker.oauth.client_auth import ASSERTION_ALGORITHMS, SECRET_METHODS
from broker.oauth.clients import AUTH_METHODS
from broker.oauth.id_jag import ID_JAG_PROFILE, ID_JAG_TOKEN_TYPE, JWT_BEARER, TOKEN_EXCHANGE
from broker.oauth.scopes import META_SCOPES

GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
SIGNING_ALGORITHMS = ["ES256", "RS256"]
CLAIMS_SUPPORTED = ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "at_hash", "azp", "email",
                    "email_verified", "name"]


def authorization_server_metadata(settings: Settings, scopes: list[str]) -> dict[str, Any]:
    """Every field MCP clients read (RFC 8414, the MCP, CIMD and ID-JAG specs); ``issuer`` is the configured
    issuer byte for byte."""
    issuer = settings.issuer
    document: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types(settings),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "scopes_supported": sorted(set(scopes) | META_SCOPES),  # OIDC Discovery §3: openid among them
        "revocation_endpoint": f"{issuer}/revoke",
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint": f"{issuer}/introspect",
        "introspection_endpoint_auth_methods_supported": [*SECRET_METHODS, "private_key_jwt"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 §3
        "resource_indicators_supported": True,
        # OpenID Connect Discovery §3: the broker is an OpenID Provider for its clients
        "userinfo_endpoint": f"{issuer}/userinfo",
        "id_token_signing_alg_values_supported": SIGNING_ALGORITHMS,
        "subject_types_supported": ["public"],
        "claims_supported": CLAIMS_SUPPORTED,
        "dpop_signing_alg_values_supported": list(settings.dpop.algorithms),  # RFC 9449 §5.1
    }
    if settings.registration.enabled:
        document["registration_endpoint"] = f"{issuer}/register"
    if settings.cimd.enabled:
        document["client_id_metadata_document_supported"] = True  # MCP 2026-07-28: https URLs as client ids
    if settings.id_jag.trusted_issuers:  # that ID-JAGs are accepted, never from whom (ID-JAG draft)
        document["authorization_grant_profiles_supported"] = [ID_JAG_PROFILE]
    if settings.id_jag.audiences:
        document["identity_chaining_requested_token_types_supported"] = [ID_JAG_TOKEN_TYPE]
    return document


def grant_types(settings: Settings) -> list[str]:
    found = list(GRANT_TYPES)
    if settings.id_jag.trusted_issuers:
        found.append(JWT_BEARER)
    if settings.id_jag.audiences:
        found.append(TOKEN_EXCHANGE)
    return found


def paths_for(issuer_path: str) -> list[str]:
    """Where clients look for the document (RFC 8414 §3.1 and OIDC Discovery §4), for an issuer path."""
    if not issuer_path or issuer_path == "/":
        return ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
    return [f"/.well-known/oauth-authorization-server{issuer_path}", f"/.well-known/openid-configuration{issuer_path}",
            f"{issuer_path}/.well-known/openid-configuration"]


__all__ = ["META_SCOPES", "authorization_server_metadata", "paths_for"]
