"""Every route of the app, whether the OpenAPI document lists it or not, against each class of hostile input:
malformed credentials in every header that carries them (Authorization, DPoP, the console's cookies), and
malformed, over-deep or type-confused JSON at every route that takes JSON. No answer may be a 5xx, no request
may leave a traceback in the log, and none more than one warning line (``tests.support.hostile.verdict``).

Routes are read from the app itself, so a new route is covered the day it is added. Requests carry valid
credentials where the route needs them to get past authentication to the body (an admin API token with every
admin scope, the SCIM token, a signed Global Token Revocation bearer), and the rate limits are off.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute

from tests.conftest import ISSUER
from tests.flows.test_security_signals import JWK, KEY, TRANSMITTER
from tests.support.hostile import AUTHORIZATION, COOKIE, DPOP, JSON_BODIES, WRONG_TYPES, verdict, watched_logs
from tests.support.oauth_flow import register_client

ADMIN_SCOPES = ("admin:read", "admin:write", "security:revoke")
SCIM_TOKEN = secrets.token_urlsafe(30)
METRICS_TOKEN = secrets.token_urlsafe(30)
JSON_TYPES = ("application/json", "application/scim+json")
# What a client would send in each JSON body (RFC 7591 client metadata, SCIM resources, Global Token
# Revocation), for the bodies the OpenAPI document shows as free-form objects.
FREE_FORM_FIELDS = {
    "/register": ["redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method", "client_name",
                  "client_uri", "logo_uri", "scope", "contacts", "tos_uri", "policy_uri", "jwks_uri", "jwks",
                  "software_id", "software_version"],
    "/scim/v2/Users": ["schemas", "userName", "name", "displayName", "emails", "active", "externalId", "groups",
                       "Operations"],
    "/scim/v2/Groups": ["schemas", "displayName", "members", "externalId", "Operations"],
    "/global-logout": ["sub_id"],
}
VALID_BODIES = {
    "/register": {"redirect_uris": ["http://127.0.0.1:9999/cb"], "client_name": "x"},
    "/scim/v2/Users": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "fuzz@example.com",
                       "active": True},
    "/scim/v2/Groups": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "fuzz"},
    "/global-logout": {"sub_id": {"format": "email", "email": "nobody@example.com"}},
}


@pytest.fixture
def settings(make_settings: Any) -> Any:
    sender = {"issuer": TRANSMITTER, "jwks_uri": f"{TRANSMITTER}/jwks", "idp": "test", "algorithms": ["ES256"]}
    return make_settings(scim={"enabled": True, "tokens": [{"idp": "test", "token": SCIM_TOKEN}]},
                         metrics={"enabled": True, "bearer_token": METRICS_TOKEN},
                         signals={"ssf_transmitters": [{"id": "idp-ssf", **sender}],
                                  "logout_issuers": [{"id": "idp-logout", **sender}]},
                         rate_limits={"enabled": False})


@pytest.fixture(autouse=True)
def transmitter_keys(loopback: Any) -> None:
    loopback.others["idp.example"] = lambda request: httpx.Response(200, json={"keys": [JWK]})


@pytest.fixture
async def raw(app: Any) -> Any:
    """A client that reports a crash as the 500 a server would send, instead of raising it."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        yield http


@pytest.fixture
async def admin_token(raw: httpx.AsyncClient, state: Any) -> str:
    robot = register_client(state, name="Fuzzer", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=ADMIN_SCOPES, trusted=True,
                            may_introspect=True)
    response = await raw.post("/token", data={"grant_type": "client_credentials", "resource": f"{ISSUER}/admin/api"},
                              auth=(robot.row.id, robot.secret))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def routes(app: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    """(method, path with parameters filled in, JSON media types it takes) for every route of the app."""
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            media = tuple((operation.get("requestBody") or {}).get("content", {}))
            found[(method.upper(), path)] = tuple(m for m in media if m in JSON_TYPES)
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in route.methods - {"HEAD"}:
                found.setdefault((method, route.path_format), ())
    return [(method, re.sub(r"\{[^}]+\}", "x", path), media) for (method, path), media in sorted(found.items())]


def logout_bearer() -> str:
    now = int(time.time())
    return jwt.encode({"iss": TRANSMITTER, "aud": ISSUER, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())},
                      KEY, algorithm="ES256", headers={"kid": "t1"})


def credentials(path: str, admin_token: str) -> dict[str, str]:
    if path.startswith("/admin/api/"):
        return {"authorization": f"Bearer {admin_token}"}
    if path.startswith("/scim/"):
        return {"authorization": f"Bearer {SCIM_TOKEN}"}
    if path == "/global-logout":
        return {"authorization": f"Bearer {logout_bearer()}"}
    return {}


def plain_body(method: str, media: tuple[str, ...]) -> tuple[bytes, str] | None:
    if method not in ("POST", "PUT", "PATCH"):
        return None
    if media:
        return b"{}", media[0]
    return b"grant_type=client_credentials&token=x&client_id=x", "application/x-www-form-urlencoded"


async def attempt(http: httpx.AsyncClient, method: str, path: str, headers: list[tuple[bytes, bytes]],
                  body: tuple[bytes, str] | None, case: str) -> str | None:
    """One hostile request; None if it was refused cleanly, else what went wrong."""
    if body is not None:
        headers = [*headers, (b"content-type", body[1].encode())]
    with watched_logs() as seen:
        response = await http.request(method, path, headers=headers, content=body[0] if body else None)
    problem = verdict(response.status_code, seen)
    return None if problem is None else f"{method} {path} ({case}): {problem}"


async def test_malformed_credentials_in_every_header_that_carries_them(raw: httpx.AsyncClient, app: Any) -> None:
    failures = []
    for method, path, media in routes(app):
        body = plain_body(method, media)
        cases = [(f"Authorization: {name}", [(b"authorization", value)]) for name, value in AUTHORIZATION.items()]
        cases += [(f"DPoP: {name}", [(b"dpop", value), (b"authorization", b"DPoP x")]) for name, value in DPOP.items()]
        cases += [(f"Cookie: {name}", [(b"cookie", value)]) for name, value in COOKIE.items()]
        for case, headers in cases:
            failures.append(await attempt(raw, method, path, headers, body, case))
    problems = [f for f in failures if f]
    assert not problems, "\n".join(problems[:40])


def json_routes(app: Any) -> list[tuple[str, str, str, list[str]]]:
    """(method, path, media type, the fields its body has) for every route that takes JSON."""
    document = app.openapi()
    out = []
    for method, path, media in routes(app):
        if not media:
            continue
        fields = FREE_FORM_FIELDS.get(re.sub(r"/x$", "", path), [])
        schema = document["paths"].get(path, {}).get(method.lower(), {})
        ref = ((schema.get("requestBody") or {}).get("content", {}).get(media[0], {}).get("schema") or {}).get("$ref")
        if ref:
            fields = list(document["components"]["schemas"][ref.rsplit("/", 1)[-1]].get("properties", {}))
        out.append((method, path, media[0], fields))
    return out


async def test_malformed_and_over_deep_json_at_every_json_route(raw: httpx.AsyncClient, app: Any,
                                                               admin_token: str) -> None:
    failures = []
    for method, path, media, _ in json_routes(app):
        for case, body in JSON_BODIES.items():
            headers = [(k.encode(), v.encode()) for k, v in credentials(path, admin_token).items()]
            failures.append(await attempt(raw, method, path, headers, (body, media), case))
    problems = [f for f in failures if f]
    assert not problems, "\n".join(problems[:40])


async def test_every_field_of_every_json_body_in_the_wrong_type(raw: httpx.AsyncClient, app: Any,
                                                                admin_token: str) -> None:
    failures, tried = [], 0
    for method, path, media, fields in json_routes(app):
        base = VALID_BODIES.get(re.sub(r"/x$", "", path), {})
        for name in fields:
            for case, value in WRONG_TYPES.items():
                body = json.dumps({**base, name: value}).encode()
                headers = [(k.encode(), v.encode()) for k, v in credentials(path, admin_token).items()]
                failures.append(await attempt(raw, method, path, headers, (body, media), f"{name}: {case}"))
                tried += 1
    assert tried > 500  # every JSON route has its fields (a schema change would otherwise empty this test)
    problems = [f for f in failures if f]
    assert not problems, "\n".join(problems[:40])
