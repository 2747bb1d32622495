"""Console sign-in through the upstream IdP, and sign-out.

``/admin/login`` -> the IdP (the broker's own client there, redirect URI ``<issuer>/admin/callback/<idp>``)
-> ``/admin/callback/<idp>``: the state, nonce and PKCE verifier travel in a short-lived cookie encrypted
under the key-encryption key, so any instance can finish the login and no other browser can. The
verified ``Identity``'s groups give the roles (``[admin]`` settings); no role, no session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import weakref
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from broker import audit
from broker.admin import sessions
from broker.audit import Outcome
from broker.federation.base import Connector
from broker.federation.errors import UpstreamError, error_from_response
from broker.federation.identity import Identity
from broker.keys.crypto import DecryptionError, Encryptor
from broker.oauth import provisioning
from broker.storage.enums import UserStatus
from broker.storage.models import utcnow
from broker.web.admin.common import (
    ConsoleRoute,
    Refused,
    clear_session_cookie,
    cookie_name,
    read_form,
    redirect_303,
    render,
    secure,
    set_session_cookie,
)
from broker.web.deps import State
from broker.web.oauth_http import redirect
from broker.web.state import BrokerState

log = logging.getLogger("broker.web.admin")
router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)
LOGIN_TTL = 600
_connectors: weakref.WeakKeyDictionary[Connector, Connector] = weakref.WeakKeyDictionary()


def admin_connector(state: BrokerState, idp_id: str) -> Connector:
    """The IdP's connector, returning to the console's callback instead of the OAuth one (same caches)."""
    base = state.oauth.connectors.get(idp_id)
    if base is None:
        raise Refused("Unknown identity provider", "No identity provider with that id is configured.", 404)
    if base not in _connectors:
        _connectors[base] = base.returning_to(f"{state.settings.issuer}/admin/callback/{idp_id}")
    return _connectors[base]


def _login_cookie(state: BrokerState) -> str:
    return "__Host-broker-admin-login" if secure(state) else "broker-admin-login"


def _encryptor(state: BrokerState) -> Encryptor:
    keks = state.settings.key_encryption_keys()
    assert keks  # the broker does not start without one
    return Encryptor.of(keks)


def _seal(state: BrokerState, data: dict[str, Any]) -> str:
    blob = _encryptor(state).encrypt(json.dumps(data).encode(), "admin-login")
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def _unseal(state: BrokerState, text: str | None) -> dict[str, Any] | None:
    if not text or len(text) > 2000:
        return None
    try:
        data = json.loads(_encryptor(state).decrypt(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)),
                                                    "admin-login"))
    except (DecryptionError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("exp", 0) > time.time() else None


@router.get("/login")
async def login(request: Request, state: State) -> Response:
    idp_id = request.query_params.get("idp")
    if idp_id is None:
        names = [(i, getattr(c, "display_name", i)) for i, c in state.oauth.connectors.items()]
        return render(request, "admin/login.html", None, {"choices": names})
    connector = admin_connector(state, idp_id)
    verifier, login_state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    try:
        location = await connector.authorization_url(state=login_state, nonce=nonce, code_challenge=challenge)
    except UpstreamError as exc:
        raise Refused("Identity provider unavailable", f"The identity provider did not answer: {exc.description}",
                      502) from None
    response = redirect(location)
    sealed = _seal(state, {"idp": idp_id, "state": login_state, "nonce": nonce, "verifier": verifier,
                           "exp": time.time() + LOGIN_TTL})
    # Lax: the IdP sends the browser back with a top-level GET from another site
    response.set_cookie(_login_cookie(state), sealed, max_age=LOGIN_TTL, path="/", secure=secure(state),
                        httponly=True, samesite="lax")
    return response


@router.get("/callback/{idp_id}")
async def callback(idp_id: str, request: Request, state: State) -> Response:
    pending = _unseal(state, request.cookies.get(_login_cookie(state)))
    returned = request.query_params.get("state") or ""
    # the login must have started in this browser, for this IdP (login CSRF, RFC 6749 §10.12)
    if pending is None or pending.get("idp") != idp_id or not hmac.compare_digest(returned.encode(),
                                                                                   str(pending["state"]).encode()):
        raise Refused("Sign-in expired", "This sign-in did not start in this browser or took too long. "
                      "Start again from the console's sign-in page.", 400)
    connector = admin_connector(state, idp_id)
    try:
        await connector.check_response_issuer(request.query_params.get("iss"))  # RFC 9207 mix-up defence
        code = request.query_params.get("code")
        if request.query_params.get("error") or not code:
            raise error_from_response(request.query_params.get("error") or "invalid_request",
                                      request.query_params.get("error_description"))
        identity = await connector.complete(code=code, code_verifier=pending["verifier"], nonce=pending["nonce"])
    except UpstreamError as exc:
        log.warning("console sign-in failed upstream", extra={"idp": idp_id, "error": exc.upstream_error})
        raise Refused("Sign-in failed", f"The identity provider refused the sign-in: {exc.description}") from None
    cookie = await run_in_threadpool(_open_session, state, identity)
    response = render(request, "admin/signed_in.html", None, {})
    response.delete_cookie(_login_cookie(state), path="/", secure=secure(state), httponly=True, samesite="lax")
    set_session_cookie(response, state, cookie)
    return response


def _open_session(state: BrokerState, identity: Identity) -> str:
    now = utcnow()
    with state.database.transaction() as db:
        user = provisioning.upsert_user(db, identity, _encryptor(state), now)
        roles = sessions.roles_for(identity.idp_id, identity.groups, state.settings.admin)
        refusal = "user offboarded" if user.status != UserStatus.ACTIVE else None if roles else "no console role"
        if refusal:
            audit.record(db, "admin.login_refused", actor=f"console:{user.email or user.id}", user_id=user.id,
                         outcome=Outcome.DENIED, data={"reason": refusal, "idp": identity.idp_id})
        else:
            cookie = sessions.start(db, user, identity.idp_id, roles, state.settings.admin, now)
            audit.record(db, "admin.login", actor=f"console:{user.email or user.id}", user_id=user.id,
                         data={"roles": roles, "idp": identity.idp_id})
            return cookie
    raise Refused("No access to the admin console",
                  "You signed in, but none of your groups at the identity provider gives a console role, or your "
                  "account is offboarded. Ask your IT administrators to add you to an admin group.")


@router.post("/logout")
async def logout(request: Request, state: State) -> Response:
    form = await read_form(request)

    def run() -> None:
        with state.database.transaction() as db:
            console = sessions.resume(db, request.cookies.get(cookie_name(state)), state.settings.admin, utcnow())
            if console is None:
                return
            if not sessions.csrf_ok(console, form.get("csrf_token")):
                raise Refused("Form expired or forged (CSRF check failed)",
                              "The sign-out form did not carry this session's security token.")
            sessions.end(db, console.session_id, utcnow())
            audit.record(db, "admin.logout", actor=console.actor, user_id=console.user_id)

    await run_in_threadpool(run)
    response = redirect_303("/admin/login?signed_out=1")
    clear_session_cookie(response, state)
    return response
