"""Canonical resource URIs: one spelling per MCP server."""

from __future__ import annotations

import pytest

from broker.registry.resources import InvalidResource, canonical_resource


@pytest.mark.parametrize("given,canonical", [
    ("https://mcp.example.com/github", "https://mcp.example.com/github"),
    ("HTTPS://MCP.EXAMPLE.COM/github", "https://mcp.example.com/github"),
    ("https://mcp.example.com/github/", "https://mcp.example.com/github"),
    ("https://mcp.example.com:443/github", "https://mcp.example.com/github"),
    ("http://127.0.0.1:80/x", "http://127.0.0.1/x"),
    ("https://mcp.example.com:8443/x", "https://mcp.example.com:8443/x"),
    ("https://mcp.example.com/", "https://mcp.example.com"),
    ("https://mcp.example.com", "https://mcp.example.com"),
    ("https://mcp.example.com/GitHub", "https://mcp.example.com/GitHub"),   # paths are case-sensitive
    ("http://[::1]:8000/mcp", "http://[::1]:8000/mcp"),
    ("https://bücher.example/mcp", "https://xn--bcher-kva.example/mcp"),    # IDNA, so look-alikes differ
    ("https://mcp.example.com/x?tenant=1", "https://mcp.example.com/x?tenant=1"),
])
def test_canonical(given: str, canonical: str) -> None:
    assert canonical_resource(given) == canonical


@pytest.mark.parametrize("given", ["", "mcp.example.com/x", "ftp://mcp.example.com/x", "https://mcp.example.com/x#f",
                                   "https://u:p@mcp.example.com/x", "https://mcp.example.com/a/../b",
                                   "https://mcp.example.com/ x", "https:///x", "https://mcp.example.com:99999/x",
                                   "https://" + "a" * 3000])
def test_invalid(given: str) -> None:
    with pytest.raises(InvalidResource):
        canonical_resource(given)


def test_cyrillic_look_alike_never_matches_the_ascii_host() -> None:
    assert canonical_resource("https://mcp.exаmple.com/x") != canonical_resource("https://mcp.example.com/x")
