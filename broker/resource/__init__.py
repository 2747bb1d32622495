"""For MCP servers that trust the broker: a token verifier for the MCP Python SDK (bearer and DPoP),
the DPoP proof checker, and the Protected Resource Metadata (RFC 9728) helpers. See docs/mcp-servers.md."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name from its module on first use (PEP 562): the broker's own token endpoint imports the DPoP proof
# checker (broker.resource.dpop), and must not load the MCP SDK that the verifier and the middleware need.
_MODULES = {
    "TokenRejected": "broker.resource.claims",
    "VerifiedClaims": "broker.resource.claims",
    "verify_claims": "broker.resource.claims",
    "DpopError": "broker.resource.dpop",
    "DpopProof": "broker.resource.dpop",
    "check_proof": "broker.resource.dpop",
    "jwk_thumbprint": "broker.resource.dpop",
    "DpopAuthMiddleware": "broker.resource.dpop_middleware",
    "metadata_path": "broker.resource.metadata",
    "metadata_url": "broker.resource.metadata",
    "protected_resource_metadata": "broker.resource.metadata",
    "www_authenticate": "broker.resource.metadata",
    "www_authenticate_dpop": "broker.resource.metadata",
    "ProofReplayCache": "broker.resource.replay",
    "RevocationFeed": "broker.resource.revocation",
    "BrokerAccessToken": "broker.resource.verifier",
    "BrokerTokenVerifier": "broker.resource.verifier",
    "RevocationCheck": "broker.resource.verifier",
    "current_access_token": "broker.resource.verifier",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
