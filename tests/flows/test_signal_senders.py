"""What a security-signal sender may do: a sender bound to one IdP acts on that IdP's users only, whatever the
subject format says, and no event is accepted once it is older than its id is remembered against replay."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from broker.storage.models import AuditEvent
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT
from tests.flows.test_security_signals import (
    ACCOUNT_DISABLED,
    JWK,
    KEY,
    SESSION_REVOKED,
    TRANSMITTER,
    alice,
    event_types,
    push,
    signed_set,
)
from tests.support.hostile import signed, verdict, watched_logs, wrong_claims
from tests.support.oauth_flow import authorize, exchange, pkce, refresh, register_client

TEST_IDP = f"{ISSUER}/testidp"
OTHER_IDP = "https://other-idp.example"
DAY = 86400


@pytest.fixture
def sender_idp() -> str:
    return "other"


@pytest.fixture
def settings(make_settings: Any, sender_idp: str) -> Any:
    other = {"id": "other", "type": "oidc", "issuer": OTHER_IDP, "client_id": "broker", "client_secret": "s" * 32}
    test = {"id": "test", "type": "test", "issuer": TEST_IDP, "client_id": TESTIDP_CLIENT["client_id"],
            "client_secret": TESTIDP_CLIENT["client_secret"], "email_domains": ["example.com"]}
    sender = {"issuer": TRANSMITTER, "jwks_uri": f"{TRANSMITTER}/jwks", "idp": sender_idp, "algorithms": ["ES256"]}
    return make_settings(idps=[test, other], signals={"ssf_transmitters": [{"id": "idp-ssf", **sender}],
                                                      "logout_issuers": [{"id": "idp-logout", **sender}]},
                         testidp={"enabled": True, "users": TEST_USERS, "clients": [TESTIDP_CLIENT]})


@pytest.fixture(autouse=True)
def transmitter_keys(loopback: Any) -> None:
    loopback.others["idp.example"] = lambda request: httpx.Response(200, json={"keys": [JWK]})


async def alice_tokens(client: httpx.AsyncClient, state: Any) -> tuple[str, dict]:
    """alice signs in at the test IdP (her login_hint's domain picks it)."""
    app_client = register_client(state, trusted=True)
    verifier, challenge = pkce()
    redirect = await authorize(client, app_client.row.id, challenge, login_hint="alice@example.com")
    response = await exchange(client, app_client.row.id, redirect["code"], verifier)
    assert response.status_code == 200, response.text
    return app_client.row.id, response.json()


def logout_bearer(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": TRANSMITTER, "aud": ISSUER, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4()), **overrides}
    return jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": "t1"})


async def global_logout(client: httpx.AsyncClient, sub_id: dict, bearer: str | None = None) -> httpx.Response:
    return await client.post("/global-logout", json={"sub_id": sub_id},
                             headers={"authorization": f"Bearer {bearer or logout_bearer()}"})


# alice signed in at the test IdP; the sender speaks for the IdP "other"
ALICE_ELSEWHERE = {
    "iss_sub naming the test IdP": {"format": "iss_sub", "iss": TEST_IDP, "sub": "alice"},
    "iss_sub naming the sender": {"format": "iss_sub", "iss": TRANSMITTER, "sub": "alice"},
    "email": {"format": "email", "email": "alice@example.com"},
    "opaque": {"format": "opaque", "id": "alice"},
    "complex": {"format": "complex", "user": {"format": "iss_sub", "iss": TEST_IDP, "sub": "alice"}},
}


@pytest.mark.parametrize("event", [ACCOUNT_DISABLED, SESSION_REVOKED], ids=["RISC account-disabled",
                                                                            "CAEP session-revoked"])
@pytest.mark.parametrize("subject", ALICE_ELSEWHERE.values(), ids=ALICE_ELSEWHERE.keys())
async def test_a_sender_bound_to_an_idp_never_acts_on_another_idps_users(client: httpx.AsyncClient, state: Any,
                                                                        event: str, subject: dict) -> None:
    client_id, body = await alice_tokens(client, state)
    response = await push(client, signed_set({event: {}}, subject))
    assert response.status_code == 202  # RFC 8935: accepted, and nobody it may speak for is named
    assert alice(state).status == "active" and event_types(state)[-1] == "signal.ignored"
    assert (await refresh(client, client_id, body["refresh_token"])).status_code == 200


@pytest.mark.parametrize("subject", ALICE_ELSEWHERE.values(), ids=ALICE_ELSEWHERE.keys())
async def test_a_logout_caller_bound_to_an_idp_never_logs_out_another_idps_users(client: httpx.AsyncClient,
                                                                                 state: Any, subject: dict) -> None:
    client_id, body = await alice_tokens(client, state)
    response = await global_logout(client, subject)
    assert response.status_code == 404
    assert (await refresh(client, client_id, body["refresh_token"])).status_code == 200


@pytest.mark.parametrize("sender_idp", ["test"])
async def test_a_sender_bound_to_the_users_idp_acts(client: httpx.AsyncClient, state: Any) -> None:
    """The control: the same subjects work for a sender that speaks for alice's IdP."""
    client_id, body = await alice_tokens(client, state)
    subject = {"format": "iss_sub", "iss": TEST_IDP, "sub": "alice"}
    assert (await push(client, signed_set({SESSION_REVOKED: {}}, subject))).status_code == 202
    assert (await refresh(client, client_id, body["refresh_token"])).json()["error"] == "invalid_grant"
    assert (await global_logout(client, {"format": "iss_sub", "iss": TRANSMITTER, "sub": "alice"})).status_code == 204


@pytest.mark.parametrize("sender_idp", ["test"])
async def test_an_event_older_than_the_replay_memory_is_refused(client: httpx.AsyncClient, state: Any) -> None:
    client_id, body = await alice_tokens(client, state)
    subject = {"format": "iss_sub", "iss": TEST_IDP, "sub": "alice"}
    old = signed_set({ACCOUNT_DISABLED: {}}, subject, iat=int(time.time()) - 30 * DAY)
    refused = await push(client, old)
    assert refused.status_code == 400 and refused.json()["err"] == "invalid_request"
    long_lived = logout_bearer(iat=int(time.time()) - 8 * DAY, exp=int(time.time()) + 52 * DAY)
    assert (await global_logout(client, subject, long_lived)).status_code == 400
    assert alice(state).status == "active"
    assert (await refresh(client, client_id, body["refresh_token"])).status_code == 200


@pytest.mark.parametrize("sender_idp", ["test"])
async def test_an_accepted_event_is_remembered_as_long_as_it_can_be_accepted(client: httpx.AsyncClient,
                                                                            state: Any) -> None:
    from broker.storage.models import SeenJti

    bearer = logout_bearer(iat=int(time.time()) - 6 * DAY, exp=int(time.time()) + 54 * DAY)
    assert (await global_logout(client, {"format": "opaque", "id": "nobody"}, bearer)).status_code == 404
    with state.database.sessions() as session:
        [seen] = session.query(SeenJti).filter(SeenJti.purpose == "global-logout").all()
        remembered = seen.expires_at.timestamp() - time.time()
    assert 1 * DAY - 120 < remembered < 1 * DAY + 120  # until 7 days after iat (+ skew), not until its exp


@pytest.mark.parametrize("sender_idp", ["test"])
@pytest.mark.parametrize("claims", [{"iat": "1700000000"}, {"iat": True}, {"jti": 5}, {"jti": ["a"]},
                                    {"exp": "never"}], ids=["iat string", "iat bool", "jti number", "jti list",
                                                            "exp string"])
async def test_event_claims_of_the_wrong_type_are_refused(client: httpx.AsyncClient, state: Any,
                                                          claims: dict) -> None:
    subject = {"format": "iss_sub", "iss": TEST_IDP, "sub": "alice"}
    response = await push(client, signed_set({ACCOUNT_DISABLED: {}}, subject, **claims))
    assert response.status_code == 400, response.text
    with state.database.sessions() as session:
        assert not session.query(AuditEvent).filter(AuditEvent.event_type == "user.offboarded").count()


@pytest.mark.parametrize("sender_idp", ["test"])
async def test_any_claim_of_a_signed_event_in_the_wrong_type_is_refused_cleanly(app: Any, state: Any) -> None:
    """SETs and Global Token Revocation bearers signed with the sender's own key: a claim of the wrong JSON type
    is a 4xx (or, for what the broker only reads when it is right, ignored), never a crash or a traceback."""
    nobody = {"format": "email", "email": "nobody@example.com"}
    now = int(time.time())
    event = {"iss": TRANSMITTER, "aud": ISSUER, "iat": now, "jti": "x", "sub_id": nobody,
             "events": {ACCOUNT_DISABLED: {"subject": nobody}}, "txn": "t"}
    bearer = {"iss": TRANSMITTER, "aud": ISSUER, "iat": now, "exp": now + 60, "jti": "x"}
    problems, tried = [], 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url=ISSUER) as raw:
        for kind, genuine in (("SET", event), ("logout bearer", bearer)):
            for name, case, variant in wrong_claims(genuine):
                fresh = variant if name == "jti" else {**variant, "jti": str(uuid.uuid4())}
                with watched_logs() as seen:
                    if kind == "SET":
                        token = signed(fresh, KEY, "ES256", {"kid": "t1", "typ": "secevent+jwt"})
                        response = await push(raw, token)
                    else:
                        response = await global_logout(raw, nobody, signed(fresh, KEY, "ES256", {"kid": "t1"}))
                tried += 1
                problem = verdict(response.status_code, seen)
                if problem or (name in ("iss", "aud", "iat", "jti", "exp", "events") and response.status_code < 400):
                    problems.append(f"{kind} {name} {case}: {response.status_code} {response.text[:100]} "
                                    f"{problem or ''}")
    assert tried > 150 and not problems, "\n".join(problems[:30])
