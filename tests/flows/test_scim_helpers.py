"""What the SCIM flow tests share: settings with SCIM on, a client that speaks SCIM, realistic bodies.

The request bodies are the shapes Okta and Microsoft Entra ID send (from their SCIM integration guides
and provisioning logs). The few tests here pin the helpers themselves.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from sqlalchemy import func, select

from broker.storage import models
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT
from tests.support.oauth_flow import authorize, exchange, pkce

BASE = "/scim/v2"
MEDIA_TYPE = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
TOKEN = secrets.token_urlsafe(30)  # 40 characters, as `broker keys new-kek` would give
CORP_TOKEN = secrets.token_urlsafe(30)
CORP_CLIENT = {"client_id": "broker-corp", "client_secret": "corp-secret", "redirect_uris": [f"{ISSUER}/callback/corp"]}


def scim_settings(make_settings: Any, **overrides: Any) -> Any:
    """The test IdP (``test``) and a second one (``corp``), each with its own SCIM token."""
    test_idp = {"id": "test", "type": "test", "issuer": f"{ISSUER}/testidp",
                "client_id": TESTIDP_CLIENT["client_id"], "client_secret": TESTIDP_CLIENT["client_secret"],
                "email_domains": ["example.com"]}
    corp = {"id": "corp", "type": "test", "issuer": f"{ISSUER}/testidp", "client_id": CORP_CLIENT["client_id"],
            "client_secret": CORP_CLIENT["client_secret"], "email_domains": ["corp.example"]}
    scim = {"enabled": True, "tokens": [{"idp": "test", "token": TOKEN}, {"idp": "corp", "token": CORP_TOKEN}],
            **overrides}
    return make_settings(idps=[test_idp, corp], scim=scim,
                         testidp={"enabled": True, "users": TEST_USERS, "clients": [TESTIDP_CLIENT, CORP_CLIENT]})


class Scim:
    """A SCIM client as an IdP runs it: bearer token, ``application/scim+json``."""

    def __init__(self, http: httpx.AsyncClient, token: str = TOKEN, content_type: str = MEDIA_TYPE):
        self.http, self.token, self.content_type = http, token, content_type

    def headers(self, **extra: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}", "content-type": self.content_type,
                "accept": MEDIA_TYPE, **extra}

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(BASE + path, params=params, headers=self.headers())

    async def send(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> httpx.Response:
        content = raw if raw is not None else (None if body is None else httpx.Request(
            "POST", "http://x", json=body).content)
        return await self.http.request(method, BASE + path, content=content, headers=self.headers())

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.send("POST", path, body)

    async def put(self, path: str, body: Any) -> httpx.Response:
        return await self.send("PUT", path, body)

    async def patch(self, path: str, *operations: dict[str, Any]) -> httpx.Response:
        return await self.send("PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": list(operations)})

    async def delete(self, path: str) -> httpx.Response:
        return await self.send("DELETE", path)


async def tokens_via_test_idp(http: httpx.AsyncClient, client_id: str, username: str = "alice") -> dict[str, Any]:
    """``tokens_for`` with a login hint, since two IdPs are configured (the hint picks the test IdP)."""
    verifier, challenge = pkce()
    redirect = await authorize(http, client_id, challenge, username=username, login_hint=f"{username}@example.com")
    assert "code" in redirect, redirect
    response = await exchange(http, client_id, redirect["code"], verifier)
    assert response.status_code == 200, response.text
    return response.json()


def okta_user(user_name: str = "alice@example.com", external_id: str = "alice", **changes: Any) -> dict[str, Any]:
    """Okta's POST /Users (its SCIM 2.0 guide): externalId is the Okta user id, the org AS's ``sub``."""
    given, _, family = user_name.partition("@")[0].partition(".")
    body = {"schemas": [USER_SCHEMA], "userName": user_name,
            "name": {"givenName": given.title(), "familyName": (family or "Anders").title()},
            "emails": [{"primary": True, "value": user_name, "type": "work"}],
            "displayName": f"{given.title()} {(family or 'Anders').title()}", "locale": "en-US",
            "externalId": external_id, "groups": [], "password": "1mz050nq", "active": True}
    body.update(changes)
    return body


def entra_user(user_name: str = "alice@example.com", external_id: str = "alice", **changes: Any) -> dict[str, Any]:
    """Entra ID's POST /Users (its provisioning logs), with externalId mapped from objectId."""
    body = {"schemas": [USER_SCHEMA, ENTERPRISE], "externalId": external_id, "userName": user_name, "active": True,
            "displayName": "Alice Anders", "title": "Engineer",
            "emails": [{"primary": True, "type": "work", "value": user_name}], "meta": {"resourceType": "User"},
            "name": {"formatted": "Alice Anders", "familyName": "Anders", "givenName": "Alice"},
            "preferredLanguage": "en-US", "roles": [], ENTERPRISE: {"department": "Engineering",
                                                                    "employeeNumber": "1001"}}
    body.update(changes)
    return body


def assert_scim_error(response: httpx.Response, status: int, scim_type: str | None = None) -> dict[str, Any]:
    """The RFC 7644 §3.12 error shape: schemas, status as a string, scimType when the RFC defines one."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(MEDIA_TYPE)
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == str(status), body
    assert body.get("scimType") == scim_type, body
    assert "Traceback" not in response.text and "\n" not in body.get("detail", "")
    return body


def state_of(state: Any) -> dict[str, Any]:
    """Everything a SCIM request could change, to show that a refused one changed nothing."""
    with state.database.sessions() as session:
        def rows(model: Any, *columns: str) -> list[tuple[Any, ...]]:
            return sorted(tuple(getattr(r, c) for c in columns) for r in session.scalars(select(model)))

        return {
            "users": rows(models.User, "id", "email", "display_name", "status", "not_before"),
            "identities": rows(models.UpstreamIdentity, "user_id", "idp_id", "subject", "email"),
            "scim_users": rows(models.ScimUser, "id", "user_name", "external_id", "active", "attributes",
                               "deleted_at", "offboarded_at"),
            "groups": rows(models.Group, "id", "source", "name", "external_id"),
            "memberships": rows(models.GroupMembership, "user_id", "group_id"),
            "families": rows(models.RefreshTokenFamily, "id", "revoked_at"),
            "revocations": session.scalar(select(func.count()).select_from(models.Revocation)),
            "audit": sorted(session.scalars(select(models.AuditEvent.event_type)
                                            .where(models.AuditEvent.event_type != "scim.request.rejected"))),
        }


def audit_events(state: Any, prefix: str = "scim.") -> list[models.AuditEvent]:
    with state.database.sessions() as session:
        return list(session.scalars(select(models.AuditEvent).where(models.AuditEvent.event_type.startswith(prefix))
                                    .order_by(models.AuditEvent.id)))


def test_bodies_are_json_objects_with_their_schemas() -> None:
    assert okta_user()["schemas"] == [USER_SCHEMA] and ENTERPRISE in entra_user()
    assert len(TOKEN) == 40 and TOKEN != CORP_TOKEN
