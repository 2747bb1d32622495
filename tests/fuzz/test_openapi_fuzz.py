"""Fuzz every operation of the broker's own OpenAPI document with schemathesis (issue 10, item 1).

The app is built in-process as the flow tests build it (dev mode, the test IdP, the demo server), with
SCIM and metrics switched on so their routes are in the document too. Each request carries the
credential its route family takes: an admin API token holding every admin scope, the SCIM token, the
metrics token. The OAuth endpoints parse their parameters by hand, so the document shows free-form
queries and bodies; ``described`` adds their parameters to the fuzzer's copy only. Every response must
be no 5xx, a status code the operation documents, and a documented content type and schema.

Bounded for CI: a fixed number of examples per operation, derandomised (the same requests every run),
no example database. The rate limits are off so the fuzzer reaches the handlers instead of 429s.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from starlette.testclient import TestClient

from tests.conftest import ISSUER
from tests.flows.test_security_signals import JWK, TRANSMITTER
from tests.support.oauth_flow import CLIENT_REDIRECT, DEMO_RESOURCE, register_client

MAX_EXAMPLES = 20
ADMIN_SCOPES = ("admin:read", "admin:write", "security:revoke")
SCIM_TOKEN = secrets.token_urlsafe(30)
METRICS_TOKEN = secrets.token_urlsafe(30)
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]




@schemathesis.serializer("application/secevent+jwt")
def _security_event_token(ctx: Any, value: Any) -> bytes:
    """RFC 8417 SETs are compact JWTs: the generated string is the body as it is."""
    return str(value).encode()


@pytest.fixture
def settings(make_settings: Any) -> Any:
    """Every optional surface on: SCIM, metrics, both signal receivers (a transmitter whose keys the fuzzer
    cannot sign with)."""
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
def admin_token(app: Any, state: Any) -> str:
    """A client-credentials token for the admin API holding every admin scope."""
    robot = register_client(state, name="Fuzzer", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=ADMIN_SCOPES)
    response = TestClient(app, base_url=ISSUER).post(
        "/token", data={"grant_type": "client_credentials", "resource": f"{ISSUER}/admin/api"},
        auth=(robot.row.id, robot.secret))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def one_of(*values: str) -> dict[str, Any]:
    """A realistic value or any string at all."""
    return {"anyOf": [{"enum": list(values)}, {"type": "string"}]}


def oauth_parameters(client_id: str) -> dict[str, tuple[dict[str, Any], tuple[str, ...]]]:
    """The OAuth endpoints read their parameters by hand (a repeat is an error, RFC 6749 §3.1), so the
    document shows them as free-form. This describes them for the fuzzer only, with the parameters and
    values a real client sends as required, so valid cases get past the first checks to the later ones
    and invalid cases break one thing at a time."""
    client = {"client_id": {"enum": [client_id]}}
    resource = {"resource": one_of(DEMO_RESOURCE, f"{ISSUER}/admin/api")}
    scope = {"scope": one_of("tools:read", "openid email profile", "tools:read tools:call")}
    token = {"token": {"type": "string"}, "token_type_hint": one_of("access_token", "refresh_token")}
    return {
        "/authorize": ({**client, **resource, **scope, "response_type": {"enum": ["code"]},
                        "redirect_uri": {"enum": [CLIENT_REDIRECT]}, "state": {"type": "string"},
                        "code_challenge": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"},
                        "code_challenge_method": {"enum": ["S256"]}, "prompt": one_of("consent", "none", "login"),
                        "nonce": {"type": "string"}, "login_hint": one_of("alice@example.com")},
                       ("client_id", "response_type", "redirect_uri", "code_challenge", "code_challenge_method")),
        "/token": ({**client, **resource, **scope, "redirect_uri": {"enum": [CLIENT_REDIRECT]},
                    "grant_type": {"enum": ["authorization_code", "refresh_token", "client_credentials",
                                            "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                            "urn:ietf:params:oauth:grant-type:token-exchange"]},
                    "code": {"type": "string"}, "code_verifier": {"type": "string"},
                    "refresh_token": {"type": "string"}, "assertion": {"type": "string"},
                    "subject_token": {"type": "string"},
                    "subject_token_type": one_of("urn:ietf:params:oauth:token-type:id_token"),
                    "requested_token_type": one_of("urn:ietf:params:oauth:token-type:id-jag"),
                    "audience": one_of(ISSUER)},
                   ("client_id", "grant_type")),
        "/revoke": ({**client, **token}, ("client_id", "token")),
        "/introspect": ({**client, **token}, ("token",)),
    }


def described(document: dict[str, Any], client_id: str) -> dict[str, Any]:
    """The broker's document with the OAuth parameters described (query for GET, form body for POST)."""
    for path, (fields, required) in oauth_parameters(client_id).items():
        for method, operation in document["paths"][path].items():
            if method == "get":
                operation["parameters"] = [{"name": name, "in": "query", "required": name in required,
                                            "schema": schema} for name, schema in fields.items()]
            else:
                form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]
                form["schema"] = {"type": "object", "properties": fields, "required": list(required),
                                  "additionalProperties": False}
    return document


@pytest.fixture
def api_schema(app: Any, state: Any) -> Iterator[Any]:
    public = register_client(state, name="Fuzzed MCP client")
    document = described(app.openapi(), public.row.id)
    loaded = schemathesis.openapi.from_dict(document, config=SchemathesisConfig())
    loaded.app = app
    yield loaded
    asgi.shutdown_lifespans()  # the app's periodic jobs stop before its database goes away


def credentials(path: str, admin_token: str) -> dict[str, str]:
    """The Authorization header a caller of ``path`` would send."""
    if path.startswith("/admin/api/"):
        return {"authorization": f"Bearer {admin_token}"}
    if path.startswith("/scim/"):
        return {"authorization": f"Bearer {SCIM_TOKEN}"}
    if path == "/metrics":
        return {"authorization": f"Bearer {METRICS_TOKEN}"}
    return {}


def cases(operation: Any) -> Any:
    """Valid requests and, where the operation has inputs to break, invalid ones."""
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    try:
        return positive | operation.as_strategy(GenerationMode.NEGATIVE)
    except Exception:  # noqa: BLE001 - nothing to negate (no parameters, no body)
        return positive


def fuzz(operation: Any, admin_token: str) -> None:
    @hypothesis.given(case=cases(operation))
    @hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    def run(case: Any) -> None:
        headers = {**credentials(case.path, admin_token), **(case.headers or {})}
        case.call_and_validate(base_url=ISSUER, headers=headers, checks=CHECKS, allow_redirects=False)

    run()


def summary(exc: BaseException) -> str:
    """The first lines of a failure, each cut short: the reproducing request can be a megabyte long."""
    return "\n".join(line[:200] for line in str(exc).splitlines()[:14])


def test_every_operation_answers_as_documented(api_schema: Any, admin_token: str) -> None:
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            fuzz(operation, admin_token)
        except (Exception, FailureGroup) as exc:  # noqa: BLE001 - collect them all, then report them all
            failures.append(f"{operation.label}: {summary(exc)}")
    assert operations >= 60
    assert not failures, "\n\n".join(failures)
