"""Security signals from the IdP: SSF push (CAEP, RISC) and Global Token Revocation, end to end in-process."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from broker.storage.models import AuditEvent, User
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT
from tests.support.oauth_flow import refresh, register_client, tokens_for

TRANSMITTER = "https://idp.example"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
JWK = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": "t1", "alg": "ES256", "use": "sig"}
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
ACCOUNT_DISABLED = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"


@pytest.fixture
def settings(make_settings):
    sender = {"issuer": TRANSMITTER, "jwks_uri": f"{TRANSMITTER}/jwks", "idp": "test", "algorithms": ["ES256"]}
    return make_settings(signals={"ssf_transmitters": [{"id": "idp-ssf", **sender}],
                                  "logout_issuers": [{"id": "idp-logout", **sender}]},
                         testidp={"enabled": True, "users": TEST_USERS, "clients": [TESTIDP_CLIENT]})


@pytest.fixture(autouse=True)
def transmitter_keys(loopback):
    loopback.others["idp.example"] = lambda request: httpx.Response(200, json={"keys": [JWK]})


def signed_set(events: dict, sub_id: dict, key=KEY, aud=ISSUER, typ="secevent+jwt", jti=None, **extra) -> str:
    claims = {"iss": TRANSMITTER, "aud": aud, "iat": int(time.time()), "jti": jti or str(uuid.uuid4()),
              "sub_id": sub_id, "events": events, **extra}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "t1", "typ": typ})


async def push(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/ssf/events", content=token, headers={"content-type": "application/secevent+jwt"})


async def alice_tokens(client, state) -> tuple[str, dict]:
    new = register_client(state, trusted=True)
    return new.row.id, await tokens_for(client, new.row.id)


def alice(state) -> User:
    with state.database.sessions() as session:
        return session.scalars(select(User)).one()


def event_types(state) -> list[str]:
    with state.database.sessions() as session:
        return [e.event_type for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


async def test_caep_session_revoked_ends_refresh_but_not_the_account(client, state) -> None:
    client_id, body = await alice_tokens(client, state)
    response = await push(client, signed_set({SESSION_REVOKED: {}}, {"format": "iss_sub", "iss": TRANSMITTER,
                                                                       "sub": "alice"}))
    assert response.status_code == 202
    assert (await refresh(client, client_id, body["refresh_token"])).json()["error"] == "invalid_grant"
    assert alice(state).status == "active" and "user.sessions_revoked" in event_types(state)


async def test_risc_account_disabled_offboards_by_email(client, state) -> None:
    client_id, body = await alice_tokens(client, state)
    response = await push(client, signed_set({ACCOUNT_DISABLED: {}}, {"format": "email",
                                                                       "email": "ALICE@example.com"}))
    assert response.status_code == 202 and alice(state).status == "offboarded"


async def test_unknown_subject_is_accepted_and_audited(client, state) -> None:
    response = await push(client, signed_set({ACCOUNT_DISABLED: {}}, {"format": "email", "email": "x@y.example"}))
    assert response.status_code == 202 and event_types(state)[-1] == "signal.ignored"


async def test_replayed_set_is_not_acted_on_twice(client, state) -> None:
    await alice_tokens(client, state)
    token = signed_set({SESSION_REVOKED: {}}, {"format": "iss_sub", "iss": TRANSMITTER, "sub": "alice"}, jti="once")
    assert (await push(client, token)).status_code == 202
    assert (await push(client, token)).status_code == 202
    assert event_types(state).count("user.sessions_revoked") == 1


@pytest.mark.parametrize("case,code", [
    ("bad-signature", "invalid_key"), ("wrong-audience", "invalid_audience"), ("unknown-issuer", "invalid_issuer"),
    ("wrong-typ", "invalid_request"), ("alg-none", "invalid_key"), ("garbage", "invalid_request")])
async def test_bad_sets_are_rejected_and_change_nothing(client, state, case, code) -> None:
    client_id, body = await alice_tokens(client, state)
    sub = {"format": "email", "email": "alice@example.com"}
    token = {
        "bad-signature": lambda: signed_set({ACCOUNT_DISABLED: {}}, sub, key=OTHER_KEY),
        "wrong-audience": lambda: signed_set({ACCOUNT_DISABLED: {}}, sub, aud="https://someone-else.example"),
        "unknown-issuer": lambda: jwt.encode({"iss": "https://evil.example", "aud": ISSUER, "iat": int(time.time()),
                                              "jti": "x", "events": {ACCOUNT_DISABLED: {}}, "sub_id": sub}, KEY,
                                             algorithm="ES256", headers={"kid": "t1", "typ": "secevent+jwt"}),
        "wrong-typ": lambda: signed_set({ACCOUNT_DISABLED: {}}, sub, typ="JWT"),
        "alg-none": lambda: jwt.encode({"iss": TRANSMITTER, "aud": ISSUER, "iat": int(time.time()), "jti": "n",
                                        "events": {ACCOUNT_DISABLED: {}}, "sub_id": sub}, None, algorithm="none",
                                       headers={"typ": "secevent+jwt"}),
        "garbage": lambda: "not.a.jwt",
    }[case]()
    response = await push(client, token)
    assert response.status_code == 400 and response.json()["err"] == code
    assert alice(state).status == "active"
    assert (await refresh(client, client_id, body["refresh_token"])).status_code == 200
    assert event_types(state)[-2] == "signal.rejected"


async def test_global_token_revocation(client, state) -> None:
    client_id, body = await alice_tokens(client, state)
    now = int(time.time())
    bearer = jwt.encode({"iss": TRANSMITTER, "aud": ISSUER, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())},
                        KEY, algorithm="ES256", headers={"kid": "t1"})
    response = await client.post("/global-logout", json={"sub_id": {"format": "email", "email": "alice@example.com"}},
                                 headers={"authorization": f"Bearer {bearer}"})
    assert response.status_code == 204
    assert (await refresh(client, client_id, body["refresh_token"])).json()["error"] == "invalid_grant"
    unknown = await client.post("/global-logout", json={"sub_id": {"format": "email", "email": "no@x.example"}},
                                headers={"authorization": "Bearer " + jwt.encode(
                                    {"iss": TRANSMITTER, "aud": ISSUER, "iat": now, "exp": now + 60, "jti": "u"},
                                    KEY, algorithm="ES256", headers={"kid": "t1"})})
    assert unknown.status_code == 404
    missing = await client.post("/global-logout", json={"sub_id": {}})
    assert missing.status_code == 401
