"""Every route of the app, whether the OpenAPI document lists it or not, against each class of hostile input:
malformed credentials in every header that carries them (Authorization, DPoP, the console's cookies), and
malformed, over-deep or type-confused JSON at every route that takes JSON, and hostile values (NUL, bytes that
are not UTF-8, control characters) in every path and query parameter. No answer may be a 5xx, no request
may leave a traceback in the log, and none more than one warning line (``tests.support.hostile.verdict``).

Routes are read from the app itself, so a new route is covered the day it is added. Requests carry valid
credentials where the route needs them to get past authentication to the body (an admin API token with every
admin scope, the SCIM token, a signed Global Token Revocation bearer), and the rate limits are off.
"""

from __future__ import annotations

import base64
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
from sqlalchemy import select

from broker.storage.models import User
from tests.conftest import ISSUER, TESTIDP_CLIENT
from tests.flows.test_admin_console import csrf_of, sign_in
from tests.flows.test_security_signals import JWK, KEY, TRANSMITTER
from tests.support import hostile
from tests.support.hostile import AUTHORIZATION, COOKIE, DPOP, JSON_BODIES, WRONG_TYPES, verdict, watched_logs
from tests.support.oauth_flow import register_client

ADMIN_SCOPES = ("admin:read", "admin:write", "security:revoke")
SCIM_TOKEN = secrets.token_urlsafe(30)
METRICS_TOKEN = secrets.token_urlsafe(30)
JSON_TYPES = ("application/json", "application/scim+json")
# What a client would send in each JSON body (RFC 7591 client metadata, SCIM resources, Global Token
# Revocation), for the bodies the OpenAPI document shows as free-form objects.
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
FREE_FORM_FIELDS = {
    "POST /register": ["redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method", "client_name",
                       "client_uri", "logo_uri", "scope", "contacts", "tos_uri", "policy_uri", "jwks_uri", "jwks",
                       "software_id", "software_version"],
    "POST /scim/v2/Users": ["schemas", "userName", "name", "displayName", "emails", "active", "externalId", "groups"],
    "PUT /scim/v2/Users": ["schemas", "userName", "name", "displayName", "emails", "active", "externalId", "groups"],
    "POST /scim/v2/Groups": ["schemas", "displayName", "members", "externalId"],
    "PUT /scim/v2/Groups": ["schemas", "displayName", "members", "externalId"],
    # a PatchOp, and each member of its operation (``Operations.x``: the first operation's x)
    "PATCH /scim/v2/Users": ["schemas", "Operations", "Operations.op", "Operations.path", "Operations.value"],
    "PATCH /scim/v2/Groups": ["schemas", "Operations", "Operations.op", "Operations.path", "Operations.value"],
    "POST /global-logout": ["sub_id"],
}


@pytest.fixture
def settings(make_settings: Any) -> Any:
    sender = {"issuer": TRANSMITTER, "jwks_uri": f"{TRANSMITTER}/jwks", "idp": "test", "algorithms": ["ES256"]}
    return make_settings(scim={"enabled": True, "tokens": [{"idp": "test", "token": SCIM_TOKEN}]},
                         metrics={"enabled": True, "bearer_token": METRICS_TOKEN},
                         signals={"ssf_transmitters": [{"id": "idp-ssf", **sender}],
                                  "logout_issuers": [{"id": "idp-logout", **sender}]},
                         rate_limits={"enabled": False}, admin={"admin_groups": ["it-admins"]},
                         testidp={"clients": [{**TESTIDP_CLIENT, "redirect_uris": [
                             *TESTIDP_CLIENT["redirect_uris"], f"{ISSUER}/admin/callback/test"]}]})


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
    """(method, path template, JSON media types it takes) for every route of the app."""
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            media = tuple((operation.get("requestBody") or {}).get("content", {}))
            found[(method.upper(), path)] = tuple(m for m in media if m in JSON_TYPES)
    for route in app.routes:  # an included router is one entry, its routes in effective_route_contexts
        for each in [route] if isinstance(route, APIRoute) else getattr(route, "effective_route_contexts", list)():
            for method in set(each.methods or ()) - {"HEAD"}:
                found.setdefault((method, each.path_format), ())
    return [(method, path, media) for (method, path), media in sorted(found.items())]


@pytest.fixture
async def ids(raw: httpx.AsyncClient, state: Any) -> dict[str, str]:
    """Path parameters naming things that exist, so a request gets past the lookup to what reads its body: the
    demo server, an introspecting client, a user SCIM provisioned, a SCIM group."""
    target = register_client(state, name="Target", auth_method="client_secret_basic", redirect_uris=[],
                             grant_types=(), may_introspect=True)
    scim = {"authorization": f"Bearer {SCIM_TOKEN}"}
    user = await raw.post("/scim/v2/Users", json=valid_body("POST", "/scim/v2/Users", {}), headers=scim)
    group = await raw.post("/scim/v2/Groups", json=valid_body("POST", "/scim/v2/Groups", {}), headers=scim)
    assert user.status_code == group.status_code == 201, (user.text, group.text)
    with state.database.sessions() as session:
        broker_user = session.scalars(select(User.id)).one()
    basic = base64.b64encode(f"{target.row.id}:{target.secret}".encode()).decode()
    return {"server_id": "demo", "client_id": target.row.id, "user": broker_user, "user_id": user.json()["id"],
            "external_id": user.json()["externalId"], "group_id": group.json()["id"], "basic": f"Basic {basic}"}


def filled(template: str, ids: dict[str, str]) -> str:
    """The path with each parameter an existing thing's id where there is one, else ``x``."""
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: ids.get(m.group(1), "x"), template)


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


async def test_malformed_credentials_in_every_header_that_carries_them(raw: httpx.AsyncClient, app: Any,
                                                                      ids: dict[str, str]) -> None:
    failures = []
    for method, template, media in routes(app):
        body = plain_body(method, media)
        cases = [(f"Authorization: {name}", [(b"authorization", value)]) for name, value in AUTHORIZATION.items()]
        cases += [(f"DPoP: {name}", [(b"dpop", value), (b"authorization", b"DPoP x")]) for name, value in DPOP.items()]
        cases += [(f"Cookie: {name}", [(b"cookie", value)]) for name, value in COOKIE.items()]
        for case, headers in cases:
            failures.append(await attempt(raw, method, filled(template, ids), headers, body, case))
    problems = [f for f in failures if f]
    assert not problems, "\n".join(problems[:40])


def query_parameters(app: Any, method: str, template: str) -> list[str]:
    operation = app.openapi()["paths"].get(template, {}).get(method.lower(), {})
    return [p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"]


async def test_hostile_path_and_query_parameters_at_every_route(raw: httpx.AsyncClient, app: Any,
                                                                admin_token: str, ids: dict[str, str]) -> None:
    """Each path parameter in turn, then every query parameter the route documents (and ``q``, which none
    does), holding each hostile URL value; with credentials, so the value gets to the lookup that uses it."""
    failures = []
    for method, template, media in routes(app):
        given = credentials(template, admin_token) or {"authorization": ids["basic"]}  # a resource server's
        headers = [(k.encode(), v.encode()) for k, v in given.items()]
        names = [*query_parameters(app, method, template), "q"]
        for case, value in hostile.URL_VALUES.items():
            for name in re.findall(r"\{([^}:]+)", template):
                path = filled(template, {**ids, name: value})
                failures.append(await attempt(raw, method, path, headers, plain_body(method, media), f"{name}: {case}"))
            query = "&".join(f"{name}={value}" for name in names)
            failures.append(await attempt(raw, method, f"{filled(template, ids)}?{query}", headers,
                                          plain_body(method, media), f"query: {case}"))
    problems = [f for f in failures if f]
    assert not problems, "\n".join(problems[:40])


def json_routes(app: Any) -> list[tuple[str, str, str, list[str]]]:
    """(method, path template, media type, the fields its body has) for every route that takes JSON."""
    document = app.openapi()
    out = []
    for method, template, media in routes(app):
        if not media:
            continue
        schema = (document["paths"][template][method.lower()]["requestBody"]["content"][media[0]].get("schema") or {})
        refs = [s["$ref"] for s in [schema, *schema.get("anyOf", ())] if "$ref" in s]  # an optional body: anyOf
        fields = FREE_FORM_FIELDS.get(f"{method} {template.split('/{')[0]}", [])
        if refs:
            fields = list(document["components"]["schemas"][refs[0].rsplit("/", 1)[-1]].get("properties", {}))
        out.append((method, template, media[0], fields))
    return out


def valid_body(method: str, template: str, ids: dict[str, str]) -> dict[str, Any]:
    """A body the route accepts as it stands, so each field in turn can be the one that is wrong; fresh names
    where it creates something, so every request gets as far as the first did."""
    fresh = uuid.uuid4().hex[:12]
    scim_user = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"{fresh}@example.com",
                 "externalId": fresh, "active": True}
    scim_group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": fresh}
    bodies: dict[str, dict[str, Any]] = {
        "POST /register": {"redirect_uris": ["http://127.0.0.1:9999/cb"], "client_name": "x"},
        "POST /scim/v2/Users": scim_user, "PUT /scim/v2/Users": {**scim_user, "externalId": ids.get("external_id")},
        "POST /scim/v2/Groups": scim_group, "PUT /scim/v2/Groups": scim_group,
        "PATCH /scim/v2/Users": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                                                       "value": True}]},
        "PATCH /scim/v2/Groups": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName",
                                                                        "value": fresh}]},
        "POST /global-logout": {"sub_id": {"format": "email", "email": "nobody@example.com"}},
        "POST /admin/api/v1/servers": {"id": f"fuzz-{fresh}", "name": "Fuzz", "resource": f"http://127.0.0.1:9/{fresh}",
                                       "scopes": {"read": "Read"}},
        "POST /admin/api/v1/clients": {"name": "Fuzz", "confidential": True, "introspect": True,
                                       "resource_servers": ["demo"]},
        "PUT /admin/api/v1/clients/{client_id}/trusted": {"trusted": False},
        "PUT /admin/api/v1/clients/{client_id}/resource-servers": {"servers": ["demo"]},
        "POST /admin/api/v1/users/{user}/revoke": {"reason": "fuzz"},
        "POST /admin/api/v1/users/{user}/restore": {"reason": "fuzz"},
        "POST /admin/api/v1/users/{user}/sessions/{session_id}/revoke": {"reason": "fuzz"},
        "POST /admin/api/v1/policy": {"document": "", "dry_run": True},
        "POST /admin/api/v1/policy/explain": {"server": "demo", "user": ids.get("user", "x")},
        "POST /admin/api/v1/policy/rollback": {"version": 1},
    }
    return bodies.get(f"{method} {template}") or bodies.get(f"{method} {template.split('/{')[0]}") or {}


def with_field(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """``body`` with ``name`` set to ``value``; ``Operations.x`` is member x of the first PatchOp operation."""
    if name.startswith("Operations."):
        return {**body, "Operations": [{**body["Operations"][0], name.split(".", 1)[1]: value}]}
    return {**body, name: value}


async def test_malformed_and_over_deep_json_at_every_json_route(raw: httpx.AsyncClient, app: Any,
                                                               admin_token: str, ids: dict[str, str]) -> None:
    failures = []
    for method, template, media, _ in json_routes(app):
        for case, body in JSON_BODIES.items():
            headers = [(k.encode(), v.encode()) for k, v in credentials(template, admin_token).items()]
            failures.append(await attempt(raw, method, filled(template, ids), headers, (body, media), case))
    problems = [f for f in failures if f]
    assert not problems, "\n".join(problems[:40])


async def test_every_field_of_every_json_body_in_the_wrong_type(raw: httpx.AsyncClient, app: Any, admin_token: str,
                                                                ids: dict[str, str]) -> None:
    failures, fields_of = [], {}
    for method, template, media, fields in json_routes(app):
        fields_of[f"{method} {template}"] = fields
        for name in fields:
            for case, value in WRONG_TYPES.items():
                body = json.dumps(with_field(valid_body(method, template, ids), name, value)).encode()
                headers = [(k.encode(), v.encode()) for k, v in credentials(template, admin_token).items()]
                failures.append(await attempt(raw, method, filled(template, ids), headers, (body, media),
                                              f"{name}: {case}"))
    # every JSON route has its fields (a schema change would otherwise empty this test)
    assert all(fields_of.values()), [route for route, fields in fields_of.items() if not fields]
    problems = [f for f in failures if f]
    assert not problems, "\n".join(problems[:40])


# Every field name a console form reads (broker/web/admin), each holding a NUL character at once, and every
# query parameter its pages read.
CONSOLE_FIELDS = ("access_token_lifetime", "action", "client_credentials", "client_id", "comment", "confirm",
                  "default_scopes", "description", "document", "enabled", "id", "id_jag", "introspect", "jwks_uri",
                  "name", "now", "reason", "redirect_uris", "replace", "resource", "review", "rollback", "rule",
                  "scopes", "tags", "token_exchange", "trusted", "version")
CONSOLE_QUERY = ("q", "user", "client", "server", "type", "outcome", "since", "until", "tag", "group", "groups",
                 "claims", "idp", "who_can", "page", "before", "status")


async def test_hostile_forms_paths_and_queries_in_a_signed_in_console(app: Any, ids: dict[str, str]) -> None:
    """Signed in with every role, so each value gets past the session to the page that reads it: every console
    route with hostile path and query values, and every form with a NUL in each field (or not UTF-8), its CSRF
    token valid."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as console:
        assert (await sign_in(console, "carol")).status_code == 200
        csrf = csrf_of(await console.get("/admin/servers/new"))
        nul_form = "&".join(f"{name}=a%00b" for name in CONSOLE_FIELDS) + f"&csrf_token={csrf}"
        forms = {"NUL in every field": nul_form.encode(), "not UTF-8": b"name=%ff%fe&csrf_token=" + csrf.encode()}
        failures = []
        for method, template, _ in routes(app):
            if not template.startswith("/admin") or template.startswith(("/admin/api/", "/admin/log")):
                continue
            for case, value in hostile.URL_VALUES.items():
                for name in re.findall(r"\{([^}:]+)", template):
                    path = filled(template, {**ids, name: value})
                    failures.append(await attempt(console, method, path, [], None, f"{name}: {case}"))
                query = "&".join(f"{name}={value}" for name in CONSOLE_QUERY)
                failures.append(await attempt(console, method, f"{filled(template, ids)}?{query}", [], None,
                                              f"query: {case}"))
            if method == "POST":
                for case, body in forms.items():
                    failures.append(await attempt(console, method, filled(template, ids), [],
                                                  (body, "application/x-www-form-urlencoded"), case))
        assert (await console.get("/admin")).status_code == 200  # still signed in: nothing above signed out
    problems = [f for f in failures if f]
    assert not problems, "\n".join(problems[:40])
