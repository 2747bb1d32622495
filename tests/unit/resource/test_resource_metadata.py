"""Protected Resource Metadata (RFC 9728) and the Bearer challenges (RFC 6750 §3) MCP clients read."""

from __future__ import annotations

import httpx2
import pytest
from mcp.client.auth.utils import (
    build_protected_resource_metadata_discovery_urls,
    extract_field_from_www_auth,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
)
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.shared.auth import ProtectedResourceMetadata

from broker.resource import metadata_path, metadata_url, protected_resource_metadata, www_authenticate

ISSUER = "http://127.0.0.1:8000"
RESOURCE = "http://127.0.0.1:8000/demo/mcp"


@pytest.mark.parametrize("resource,path", [
    ("http://127.0.0.1:8000/demo/mcp", "/.well-known/oauth-protected-resource/demo/mcp"),
    ("https://mcp.example.com/github", "/.well-known/oauth-protected-resource/github"),
    ("https://mcp.example.com", "/.well-known/oauth-protected-resource"),
    ("https://mcp.example.com/", "/.well-known/oauth-protected-resource"),
    ("https://mcp.example.com/a/b/", "/.well-known/oauth-protected-resource/a/b/"),
])
def test_metadata_path_inserts_the_well_known_prefix_before_the_resource_path(resource: str, path: str) -> None:
    assert metadata_path(resource) == path
    # the same URL the SDK's server builds and its client probes (RFC 9728 §3.1)
    assert metadata_url(resource) == str(build_resource_metadata_url(resource))  # type: ignore[arg-type]


def test_metadata_url_is_what_the_sdk_client_probes_first_without_a_challenge() -> None:
    assert build_protected_resource_metadata_discovery_urls(None, RESOURCE)[0] == metadata_url(RESOURCE)


@pytest.mark.parametrize("resource", ["https://x.example/mcp?tenant=1", "https://x.example/mcp#frag", "/demo/mcp",
                                      "ftp://x.example/mcp", "https:///mcp"])
def test_resources_that_cannot_have_routable_metadata_are_refused(resource: str) -> None:
    with pytest.raises(ValueError):
        metadata_path(resource)


def test_protected_resource_metadata_document() -> None:
    document = protected_resource_metadata(RESOURCE, ISSUER, ["tools:read", "tools:call"], resource_name="Demo")
    assert document == {
        "resource": RESOURCE,
        "authorization_servers": [ISSUER],
        "scopes_supported": ["tools:read", "tools:call"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Demo",
    }
    parsed = ProtectedResourceMetadata.model_validate(document)  # what the SDK's client accepts
    assert str(parsed.authorization_servers[0]) == ISSUER  # no trailing slash added to the issuer
    assert str(parsed.resource) == RESOURCE


def test_resource_name_is_optional_and_issuer_kept_byte_for_byte() -> None:
    document = protected_resource_metadata("https://mcp.example.com/github", "https://sso.example.com/broker",
                                           ("repo:read",))
    assert "resource_name" not in document
    assert document["authorization_servers"] == ["https://sso.example.com/broker"]


@pytest.mark.parametrize("scope", ["two words", 'quote"', "back\\slash", ""])
def test_scope_tokens_are_validated(scope: str) -> None:
    with pytest.raises(ValueError):
        protected_resource_metadata(RESOURCE, ISSUER, [scope])


def _response(header: str) -> httpx2.Response:
    return httpx2.Response(401, headers={"WWW-Authenticate": header})


def test_401_challenge_without_a_token_has_no_error_and_names_metadata_and_scopes() -> None:
    header = www_authenticate(metadata_url(RESOURCE), ["tools:read", "tools:call"])
    assert header == ('Bearer scope="tools:read tools:call", '
                      'resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource/demo/mcp"')
    response = _response(header)
    assert extract_resource_metadata_from_www_auth(response) == metadata_url(RESOURCE)
    assert extract_scope_from_www_auth(response) == "tools:read tools:call"
    assert extract_field_from_www_auth(response, "error") is None


def test_401_challenge_for_a_refused_token() -> None:
    header = www_authenticate(metadata_url(RESOURCE), "tools:read", "invalid_token")
    assert header.startswith('Bearer error="invalid_token", scope="tools:read", resource_metadata="')


def test_403_challenge_names_every_scope_the_operation_needs() -> None:
    header = www_authenticate(metadata_url(RESOURCE), ["tools:read", "tools:call"], "insufficient_scope",
                              error_description="calling tools needs tools:call")
    response = _response(header)
    assert extract_field_from_www_auth(response, "error") == "insufficient_scope"
    assert extract_scope_from_www_auth(response) == "tools:read tools:call"
    assert extract_field_from_www_auth(response, "error_description") == "calling tools needs tools:call"
    assert extract_resource_metadata_from_www_auth(response) == metadata_url(RESOURCE)


def test_challenge_without_scope_only_points_at_the_metadata() -> None:
    assert www_authenticate("https://x.example/.well-known/oauth-protected-resource") == \
        'Bearer resource_metadata="https://x.example/.well-known/oauth-protected-resource"'


@pytest.mark.parametrize("kwargs", [
    {"error": "access_denied"},
    {"error_description": 'has a "quote"'},
    {"scope": ["ok", "not ok"]},
])
def test_challenge_refuses_values_that_would_break_the_header(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        www_authenticate(metadata_url(RESOURCE), **kwargs)  # type: ignore[arg-type]
