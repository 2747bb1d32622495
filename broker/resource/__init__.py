"""For MCP servers that trust the broker: a token verifier for the MCP Python SDK and the
Protected Resource Metadata (RFC 9728) helpers. See docs/mcp-servers.md."""

from broker.resource.claims import TokenRejected, VerifiedClaims, verify_claims
from broker.resource.metadata import metadata_path, metadata_url, protected_resource_metadata, www_authenticate
from broker.resource.revocation import RevocationFeed
from broker.resource.verifier import BrokerAccessToken, BrokerTokenVerifier, RevocationCheck, current_access_token

__all__ = [
    "BrokerAccessToken",
    "BrokerTokenVerifier",
    "RevocationCheck",
    "RevocationFeed",
    "TokenRejected",
    "VerifiedClaims",
    "current_access_token",
    "metadata_path",
    "metadata_url",
    "protected_resource_metadata",
    "verify_claims",
    "www_authenticate",
]
