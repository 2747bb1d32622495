"""Client ID Metadata Document clients through the ASGI app, on both stores.

Documents come from ``FakeMetadataFetcher`` (the network side is tested against a real https
server in tests/unit/oauth/test_cimd_ssrf.py and end to end in tests/e2e/test_cimd_sdk.py).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from broker.oauth.ssrf import FetchError
from broker.storage.models import AuditEvent, Client, PendingAuthorization
from tests.conftest import ISSUER
from tests.support.metadata_fetcher import FakeMetadataFetcher, state_fetching_with
from tests.support.oauth_flow import (
    CLIENT_REDIRECT,
    DEMO_RESOURCE,
    authorize,
    authorize_params,
    exchange,
    pkce,
    refresh,
    tokens_for,
)

CLIENT_ID = "https://agent.example.com/oauth/client.json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_document(**overrides: Any) -> dict[str, Any]:
    doc = {"client_id": CLIENT_ID, "client_name": "Agent Smith", "redirect_uris": [CLIENT_REDIRECT],
           "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
           "token_endpoint_auth_method": "none"}
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.fixture
def cimd_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(make_settings: Any, cimd_settings: dict[str, Any]) -> Any:
    return make_settings(cimd=cimd_settings)


@pytest.fixture
def documents() -> FakeMetadataFetcher:
    return FakeMetadataFetcher()


@pytest.fixture
def state(settings: Any, migrated: Any, loopback: Any, documents: FakeMetadataFetcher) -> Iterator[Any]:
    with state_fetching_with(settings, loopback, documents) as broker_state:
        yield broker_state


def stored(state: Any, client_id: str = CLIENT_ID) -> Client | None:
    with state.database.transaction() as session:
        return session.get(Client, client_id)


def count(state: Any, model: Any, *where: Any) -> int:
    with state.database.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def set_status(state: Any, status: str) -> None:
    with state.database.transaction() as session:
        row = session.get(Client, CLIENT_ID)
        assert row is not None
        row.status = status


async def start(client: httpx.AsyncClient, client_id: str = CLIENT_ID, **overrides: str) -> httpx.Response:
    _, challenge = pkce()
    return await client.get("/authorize?" + urlencode(authorize_params(client_id, challenge, **overrides)))


def assert_error_page(response: httpx.Response, *texts: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert "location" not in response.headers  # never a redirect before the client is verified
    assert response.headers["content-type"].startswith("text/html")
    for text in texts:
        assert text in response.text, response.text


# ---------------------------------------------------------------- the happy path


async def test_cimd_client_signs_in_consents_gets_and_refreshes_tokens(client: httpx.AsyncClient, state: Any,
                                                                       documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document())
    body = await tokens_for(client, CLIENT_ID)
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == CLIENT_ID and claims["aud"] == DEMO_RESOURCE
    refreshed = await refresh(client, CLIENT_ID, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert documents.fetches == [CLIENT_ID]  # once: max-age=300 covers /authorize, /token and the refresh
    row = stored(state)
    assert row is not None and (row.kind, row.status, row.name) == ("cimd", "active", "Agent Smith")
    assert row.redirect_uris == [CLIENT_REDIRECT] and row.token_endpoint_auth_method == "none"
    assert row.grant_types == ["authorization_code", "refresh_token"] and row.secret_hash is None
    assert count(state, Client, Client.kind == "dcr") == 0
    assert count(state, AuditEvent, AuditEvent.event_type == "client.cimd_added",
                 AuditEvent.client_id == CLIENT_ID) == 1


async def test_consent_shows_the_document_host_and_warns_about_loopback_redirects(
        client: httpx.AsyncClient, documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document(client_name="Totally Official Corp Tool"))
    _, challenge = pkce()
    redirect = await authorize(client, CLIENT_ID, challenge, approve=None)
    page = await client.get(redirect["location"])
    assert page.status_code == 200
    assert '<code id="client-host">agent.example.com</code>' in page.text
    assert "Totally Official Corp Tool" in page.text and "not checked by this server" in page.text
    assert 'id="loopback-warning"' in page.text
    assert '<code id="redirect-host">127.0.0.1:9999</code>' in page.text


async def test_a_document_without_refresh_token_gets_no_refresh_token(client: httpx.AsyncClient,
                                                                     documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, {"client_id": CLIENT_ID, "client_name": "Minimal", "redirect_uris": [CLIENT_REDIRECT]})
    body = await tokens_for(client, CLIENT_ID)
    assert "refresh_token" not in body


async def test_private_key_jwt_cimd_client(client: httpx.AsyncClient, documents: FakeMetadataFetcher) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "ES256"}
    documents.serve(CLIENT_ID, client_document(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [jwk]}))
    verifier, challenge = pkce()
    redirect = await authorize(client, CLIENT_ID, challenge)
    now = int(time.time())
    signed = jwt.encode({"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": f"{ISSUER}/token", "iat": now, "exp": now + 60,
                         "jti": str(uuid.uuid4())}, key, algorithm="ES256", headers={"kid": "k1"})
    unsigned = await exchange(client, CLIENT_ID, redirect["code"], verifier)
    assert unsigned.json()["error"] == "invalid_client"  # a private_key_jwt client must sign
    redirect = await authorize(client, CLIENT_ID, challenge)
    response = await exchange(client, CLIENT_ID, redirect["code"], verifier, client_assertion=signed,
                              client_assertion_type=ASSERTION_TYPE)
    assert response.status_code == 200, response.text


async def test_metadata_advertises_cimd(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert doc["client_id_metadata_document_supported"] is True


# ---------------------------------------------------------------- refusals: pages, invalid_client, nothing stored

BAD_DOCUMENTS = {
    "unreachable": (FetchError("agent.example.com resolves to a private address, which is never fetched from"),
                    "resolves to a private address"),
    "redirect": (FetchError("the server answered HTTP 302 (a redirect); redirects are not followed"),
                 "redirects are not followed"),
    "oversize": (FetchError("the document is larger than 5120 bytes"), "larger than 5120 bytes"),
    "slow": (FetchError("no complete answer within 5 seconds"), "no complete answer"),
    "mismatch": (client_document(client_id="https://agent.example.com/oauth/other.json"), "not exactly the URL"),
    "secret": (client_document(client_secret="hunter2"), "contains client_secret"),
    "symmetric": (client_document(token_endpoint_auth_method="client_secret_basic"), "shared secret"),
    "jwks_uri": (client_document(token_endpoint_auth_method="private_key_jwt", jwks_uri="http://x.example/jwks"),
                 "jwks_uri must be an https URL"),
    "no name": (client_document(client_name=None), "client_name is required"),
    "bad redirect": (client_document(redirect_uris=["http://attacker.example/cb"]), "only on loopback"),
    "not json": (b"<html>hello</html>", "not valid JSON"),
}


def serve_bad(documents: FakeMetadataFetcher, case: str) -> str:
    document, reason = BAD_DOCUMENTS[case]
    if isinstance(document, FetchError):
        documents.fail(CLIENT_ID, str(document))
    else:
        documents.serve(CLIENT_ID, document)
    return reason


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
async def test_bad_documents_are_an_error_page_and_store_nothing(case: str, client: httpx.AsyncClient, state: Any,
                                                                 documents: FakeMetadataFetcher) -> None:
    reason = serve_bad(documents, case)
    response = await start(client)
    assert_error_page(response, "Application could not be verified", "agent.example.com", reason)
    assert stored(state) is None and count(state, PendingAuthorization) == 0


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
async def test_bad_documents_are_invalid_client_at_the_token_endpoint(case: str, client: httpx.AsyncClient,
                                                                      state: Any,
                                                                      documents: FakeMetadataFetcher) -> None:
    serve_bad(documents, case)
    response = await exchange(client, CLIENT_ID, "some-code", "v" * 43)
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"
    assert "client metadata document" in response.json()["error_description"]
    assert stored(state) is None


async def test_a_redirect_uri_missing_from_the_document_is_a_page(client: httpx.AsyncClient, state: Any,
                                                                  documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document(redirect_uris=["http://127.0.0.1:9999/other"]))
    assert_error_page(await start(client), "Invalid redirect")
    assert stored(state) is None


@pytest.mark.parametrize("client_id,reason", [
    ("https://agent.example.com/oauth/client.json#x", "fragment"),
    ("https://me@agent.example.com/client.json", "user information"),
    ("https://agent.example.com/a/../client.json", "path segments"),
    ("https://agent.example.com/", "must have a path"),
])
async def test_urls_breaking_the_rules_are_refused_without_fetching(client_id: str, reason: str,
                                                                    client: httpx.AsyncClient,
                                                                    documents: FakeMetadataFetcher) -> None:
    assert_error_page(await start(client, client_id), reason)
    assert documents.fetches == []


@pytest.mark.parametrize("cimd_settings,reason", [
    ({"denied_hosts": ["*.example.com"]}, "does not accept applications described on agent.example.com"),
    ({"allowed_hosts": ["clients.example.org", "*.corp.example"]}, "only applications described on approved hosts"),
])
async def test_host_lists_refuse_without_fetching(reason: str, client: httpx.AsyncClient,
                                                  documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document())
    assert_error_page(await start(client), reason)
    response = await exchange(client, CLIENT_ID, "some-code", "v" * 43)
    assert response.json()["error"] == "invalid_client"
    assert documents.fetches == []


@pytest.mark.parametrize("cimd_settings", [{"allowed_hosts": ["*.example.com"]}])
async def test_allowed_hosts_let_their_clients_in(client: httpx.AsyncClient, documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document())
    assert (await tokens_for(client, CLIENT_ID))["access_token"]


@pytest.mark.parametrize("cimd_settings", [{"enabled": False}])
async def test_turned_off_cimd_is_neither_advertised_nor_accepted(client: httpx.AsyncClient,
                                                                  documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document())
    doc = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert "client_id_metadata_document_supported" not in doc
    assert_error_page(await start(client), "does not accept client metadata documents")
    assert (await exchange(client, CLIENT_ID, "some-code", "v" * 43)).json()["error"] == "invalid_client"
    assert documents.fetches == []


# ---------------------------------------------------------------- the stored row follows the document


async def test_a_disabled_cimd_client_is_refused_even_with_a_good_document(client: httpx.AsyncClient, state: Any,
                                                                           documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document(), cache_control="no-store")
    body = await tokens_for(client, CLIENT_ID)
    set_status(state, "disabled")
    fetched = len(documents.fetches)
    assert_error_page(await start(client), "Application disabled", status=403)
    refreshed = await refresh(client, CLIENT_ID, body["refresh_token"])
    assert refreshed.json()["error"] == "unauthorized_client"
    assert len(documents.fetches) == fetched  # refused from the database, without fetching


async def test_a_document_that_stops_being_served_ends_the_client_once_not_cached(
        client: httpx.AsyncClient, state: Any, documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document(), cache_control="no-store")
    body = await tokens_for(client, CLIENT_ID)
    assert documents.fetches == [CLIENT_ID, CLIENT_ID]  # no-store: fetched at /authorize and at /token
    documents.fail(CLIENT_ID, "the server answered HTTP 404, not 200")
    refreshed = await refresh(client, CLIENT_ID, body["refresh_token"])
    assert refreshed.json()["error"] == "invalid_client" and "HTTP 404" in refreshed.json()["error_description"]
    assert_error_page(await start(client), "HTTP 404")
    assert stored(state) is not None  # still listed for administrators


async def test_a_cached_document_is_used_until_it_expires(client: httpx.AsyncClient, state: Any,
                                                          documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document(), cache_control="max-age=300")
    body = await tokens_for(client, CLIENT_ID)
    documents.fail(CLIENT_ID, "the server could not be reached")
    assert (await refresh(client, CLIENT_ID, body["refresh_token"])).status_code == 200  # within max-age
    state.oauth.clients.cimd.cache.discard(CLIENT_ID)  # as if max-age had passed
    assert (await refresh(client, CLIENT_ID, body["refresh_token"])).json()["error"] == "invalid_client"


async def test_document_changes_update_the_stored_client(client: httpx.AsyncClient, state: Any,
                                                         documents: FakeMetadataFetcher) -> None:
    documents.serve(CLIENT_ID, client_document(), cache_control="no-store")
    await tokens_for(client, CLIENT_ID)
    set_status(state, "active")  # an administrator's flags survive document updates
    with state.database.transaction() as session:
        session.get(Client, CLIENT_ID).trusted = True
    new_redirect = "http://127.0.0.1:9999/new-callback"
    documents.serve(CLIENT_ID, client_document(client_name="Agent Smith 2", redirect_uris=[new_redirect]),
                    cache_control="no-store")
    response = await start(client, redirect_uri=new_redirect)
    assert response.status_code == 302, response.text
    row = stored(state)
    assert row.name == "Agent Smith 2" and row.redirect_uris == [new_redirect] and row.trusted
    with state.database.transaction() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "client.cimd_updated")).all()
        assert event.data["fields"] == ["name", "redirect_uris"] and event.data["redirect_uris"] == [new_redirect]
    assert_error_page(await start(client), "Invalid redirect")  # the old redirect URI is gone


async def test_generated_client_ids_are_never_fetched(client: httpx.AsyncClient,
                                                      documents: FakeMetadataFetcher) -> None:
    assert_error_page(await start(client, "mcp_unknown"), "Unknown application")
    assert_error_page(await start(client, "http://agent.example.com/oauth/client.json"), "Unknown application")
    assert documents.fetches == []


@pytest.mark.parametrize("served", [True, False], ids=["document served", "document unavailable"])
async def test_invalid_client_for_a_metadata_document_client_by_basic_is_401(client: httpx.AsyncClient,
                                                                              documents: FakeMetadataFetcher,
                                                                              served: bool) -> None:
    """RFC 6749 §5.2: a client that authenticated with the Authorization header gets 401 invalid_client with
    WWW-Authenticate, whether its document could be used or not."""
    if served:
        documents.serve(CLIENT_ID, client_document())
    encoded = base64.b64encode(f"{quote(CLIENT_ID, safe='')}:a-secret".encode()).decode()  # RFC 6749 §2.3.1
    for grant in ({"grant_type": "authorization_code", "code": "x"}, {"grant_type": "client_credentials"}):
        response = await client.post("/token", data=grant, headers={"authorization": f"Basic {encoded}"})
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")


async def test_every_field_of_a_metadata_document_in_the_wrong_type_is_refused_cleanly(
        app: Any, state: Any, documents: FakeMetadataFetcher) -> None:
    """A client's own document, fetched by the broker, with each field in each wrong JSON type (or nested past
    any recursion limit): an error page at /authorize and invalid_client at /token, never a 5xx or a traceback."""
    from tests.support.hostile import JSON_BODIES, verdict, watched_logs, wrong_claims

    _, challenge = pkce()
    variants = [(f"{name}: {case}", json.dumps(doc).encode()) for name, case, doc in wrong_claims(client_document())]
    variants += [(case, body) for case, body in JSON_BODIES.items()]
    problems = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url=ISSUER) as raw:
        for case, body in variants:
            documents.serve(CLIENT_ID, body, cache_control="no-store")
            with watched_logs() as seen:
                page = await raw.get("/authorize?" + urlencode(authorize_params(CLIENT_ID, challenge)))
                token = await raw.post("/token", data={"grant_type": "authorization_code", "code": "x",
                                                       "client_id": CLIENT_ID})
            problem = verdict(max(page.status_code, token.status_code), seen)
            if problem:
                problems.append(f"{case}: {page.status_code}/{token.status_code} {problem}")
    assert len(variants) > 90 and not problems, "\n".join(problems[:30])
