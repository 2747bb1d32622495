"""Every HTTP endpoint is in the OpenAPI document, with its error responses."""

from __future__ import annotations

import httpx

EXPECTED = {
    ("get", "/authorize"), ("get", "/callback/{idp_id}"), ("get", "/consent"), ("post", "/consent"),
    ("post", "/token"), ("post", "/revoke"), ("post", "/introspect"), ("post", "/register"), ("get", "/jwks"),
    ("get", "/.well-known/oauth-authorization-server"), ("get", "/.well-known/openid-configuration"),
    ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"),
}


async def test_openapi_lists_every_endpoint_with_errors(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = {(method, path): op for path, item in document["paths"].items() for method, op in item.items()}
    assert EXPECTED <= set(operations)
    for key in EXPECTED - {("get", "/healthz"), ("get", "/jwks"), ("get", "/.well-known/oauth-authorization-server"),
                           ("get", "/.well-known/openid-configuration")}:
        codes = set(operations[key]["responses"])
        assert any(code.startswith(("3", "4", "5")) for code in codes), (key, codes)


async def test_openapi_lists_metrics_with_its_refusals(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert {"200", "401", "404"} <= set(document["paths"]["/metrics"]["get"]["responses"])
