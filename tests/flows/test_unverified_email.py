"""An email the IdP does not vouch for is nobody's email at the broker.

Against an Entra-shaped IdP serving two allowed tenants: alice's tenant owns contoso.com (``xms_edov: true``);
in the other tenant an admin typed alice's address into mallory's mail attribute (``xms_edov: false``).
mallory never matches alice's email-keyed policy rule, never has alice's (or any) email in a token, an ID
token, UserInfo or introspection, and offboarding "alice@contoso.com" names alice alone.
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from broker.dev import DEV_POLICY
from broker.registry import policies
from broker.storage.models import UpstreamIdentity, User
from tests.conftest import ISSUER
from tests.flows.test_federation_okta_entra import ENGINEERING, ENTRA, GRAPH, TENANT, sign_in
from tests.support.fake_idps import FakeClient, FakeEntra, FakeUser, HostRouter
from tests.support.oauth_flow import exchange, pkce, register_client

OTHER_TENANT = "0d7c2c2e-5d0b-4b3c-9c7a-3f1a2b3c4d5e"
ALICE_OID, MALLORY_OID, MALLORY_ENG_OID = (f"0a0a0a0a-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))
EMAIL_RULE = '''
[[rules]]
id = "alice-by-email"
effect = "allow"
scopes = ["tools:read"]

[rules.subjects]
users = ["alice@contoso.com"]

[rules.targets]
servers = ["demo"]
'''


class Upstream(HostRouter):
    def __init__(self) -> None:
        self.entra = FakeEntra(ENTRA, [
            FakeUser("alice@contoso.com", ALICE_OID, "alice@contoso.com", "Alice", tenant=TENANT, xms_edov=True),
            FakeUser("mallory@fabrikam.example", MALLORY_OID, "alice@contoso.com", "Mallory", tenant=OTHER_TENANT,
                     xms_edov=False),
            FakeUser("eng@fabrikam.example", MALLORY_ENG_OID, "alice@contoso.com", "Mallory Eng", [ENGINEERING],
                     tenant=OTHER_TENANT)],
            [FakeClient("entra-client", "entra-secret", [f"{ISSUER}/callback/entra"])], graph_endpoint=GRAPH)
        super().__init__({"login.microsoftonline.com": self.entra.app, "graph.microsoft.com": self.entra.app})


@pytest.fixture
def loopback() -> Upstream:
    return Upstream()


@pytest.fixture
def settings(make_settings: Any) -> Any:
    entra = {"id": "entra", "type": "entra", "issuer": f"{ENTRA}/organizations/v2.0", "client_id": "entra-client",
             "client_secret": "entra-secret",
             "entra": {"allowed_tenants": [TENANT, OTHER_TENANT], "group_names": {ENGINEERING: "engineering"},
                       "graph_endpoint": GRAPH}}
    return make_settings(idps=[entra])


@pytest.fixture(autouse=True)
def email_rule(state: Any) -> None:
    with state.database.transaction() as session:
        policies.import_policy(session, DEV_POLICY + EMAIL_RULE, issuer=ISSUER, author="test")


@pytest.fixture
async def upstream(loopback: Upstream) -> Any:
    async with httpx.AsyncClient(transport=loopback) as http:
        yield http


async def sign_in_as(client: httpx.AsyncClient, upstream: httpx.AsyncClient, state: Any, login: str) -> dict:
    """The redirect's parameters, and the tokens when there was a code."""
    new = register_client(state, trusted=True, scopes=())
    verifier, challenge = pkce()
    redirect = await sign_in(client, upstream, new.row.id, challenge, login)
    if "code" not in redirect:
        return redirect
    response = await exchange(client, new.row.id, redirect["code"], verifier)
    assert response.status_code == 200, response.text
    return response.json()


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_an_unverified_email_never_matches_an_email_keyed_rule(client: httpx.AsyncClient,
                                                                     upstream: httpx.AsyncClient, state: Any) -> None:
    alice = await sign_in_as(client, upstream, state, "alice@contoso.com")
    assert claims_of(alice["access_token"])["email"] == "alice@contoso.com"  # the control: a vouched email
    mallory = await sign_in_as(client, upstream, state, "mallory@fabrikam.example")
    assert mallory["error"] == "access_denied"


async def test_an_unverified_email_never_goes_downstream_or_names_a_user(client: httpx.AsyncClient,
                                                                         upstream: httpx.AsyncClient, state: Any,
                                                                         cli: Any, capsys: Any) -> None:
    await sign_in_as(client, upstream, state, "alice@contoso.com")
    tokens = await sign_in_as(client, upstream, state, "eng@fabrikam.example")  # in by the engineering group
    assert "email" not in claims_of(tokens["access_token"])
    rs = register_client(state, name="RS", auth_method="client_secret_basic", redirect_uris=[], grant_types=(),
                         may_introspect=True)
    introspected = (await client.post("/introspect", data={"token": tokens["access_token"]},
                                      auth=(rs.row.id, rs.secret))).json()
    assert introspected["active"] and "username" not in introspected
    with state.database.sessions() as session:
        stored = session.scalars(select(User).join(UpstreamIdentity, UpstreamIdentity.user_id == User.id)
                                 .where(UpstreamIdentity.subject == MALLORY_ENG_OID)).one()
        identity = session.scalars(select(UpstreamIdentity).where(UpstreamIdentity.subject == MALLORY_ENG_OID)).one()
    assert stored.email is None and identity.email is None
    assert identity.claims["unverified_email"] == "alice@contoso.com" and "email" not in identity.claims
    assert cli(["users", "show", "alice@contoso.com", "--json"]) == 0
    assert '"Alice"' in capsys.readouterr().out  # one match: alice


async def test_userinfo_and_id_tokens_carry_no_unverified_email(client: httpx.AsyncClient,
                                                                upstream: httpx.AsyncClient, state: Any) -> None:
    from tests.flows.test_federation_okta_entra import _follow  # noqa: F401 - the browser's steps
    from tests.support.oauth_flow import CLIENT_REDIRECT, authorize_params

    new = register_client(state, trusted=True)
    verifier, challenge = pkce()
    params = authorize_params(new.row.id, challenge, login_hint="eng@fabrikam.example", resource=None,
                              scope="openid email profile")
    response = await client.get("/authorize", params=params)
    location = response.headers["location"]
    for _ in range(6):
        if location.startswith(CLIENT_REDIRECT):
            break
        response = await _follow(client, upstream, location)
        location = response.headers.get("location") or ""
    code = dict(httpx.URL(location).params)["code"]
    body = (await exchange(client, new.row.id, code, verifier, resource=None)).json()
    assert "email" not in claims_of(body["id_token"])
    userinfo = await client.get("/userinfo", headers={"authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 200 and "email" not in userinfo.json()
