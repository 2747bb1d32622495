"""For MCP servers that trust the broker: a token verifier for the MCP Python SDK (bearer and DPoP),
the DPoP proof checker, and the Protected Resource Metadata (RFC 9728) helpers. See docs/mcp-servers.md."""

from broker.resource.claims import TokenRejected, VerifiedClaims, verify_claims
from broker.resource.dpop import DpopError, DpopProof, check_proof, jwk_thumbprint
from broker.resource.dpop_middleware import DpopAuthMiddleware
from broker.resource.metadata import (
    metadata_path,
    metadata_url,
    protected_resource_metadata,
    www_authenticate,
    www_authenticate_dpop,
)
from broker.resource.replay import ProofReplayCache
from broker.resource.revocation import RevocationFeed
from broker.resource.verifier import BrokerAccessToken, BrokerTokenVerifier, RevocationCheck, current_access_token

__all__ = [
    "BrokerAccessToken",
    "BrokerTokenVerifier",
    "DpopAuthMiddleware",
    "DpopError",
    "DpopProof",
    "ProofReplayCache",
    "RevocationCheck",
    "RevocationFeed",
    "TokenRejected",
    "VerifiedClaims",
    "check_proof",
    "current_access_token",
    "jwk_thumbprint",
    "metadata_path",
    "metadata_url",
    "protected_resource_metadata",
    "verify_claims",
    "www_authenticate",
    "www_authenticate_dpop",
]
