"""The route label: a template with its router's prefix, never a raw path."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.routing import Mount

from broker.web.metrics import UNROUTED, _route
from broker.web.ratelimit import ROUTE_KEY


@pytest.mark.parametrize("template,path,params,label", [
    ("/token", "/token", {}, "/token"),
    ("/token", "/testidp/token", {}, "/testidp/token"),  # an included router keeps its routes unprefixed
    ("/callback/{idp_id}", "/callback/okta", {"idp_id": "okta"}, "/callback/{idp_id}"),
    ("/clients/{client_id:path}/approve", "/admin/api/v1/clients/https://app.example/cimd/approve",
     {"client_id": "https://app.example/cimd"}, "/admin/api/v1/clients/{client_id:path}/approve"),
    ("/items/{n:int}", "/items/7", {"n": 7}, "/items/{n:int}"),
])
def test_a_route_is_labelled_by_its_full_template(template: str, path: str, params: dict, label: str) -> None:
    assert _route({"route": SimpleNamespace(path=template), "path": path, "path_params": params}) == label


def test_mounts_and_unrouted_requests_are_labelled_without_their_paths() -> None:
    assert _route({"route": Mount("/static", app=lambda *a: None), "path": "/static/x.css"}) == "/static/*"
    assert _route({"path": "/secret/token/value"}) == UNROUTED
    assert _route({"path": "/token", ROUTE_KEY: "/token"}) == "/token"
