"""The whole sign-in chain of a trusted client, as its user's browser and the client itself would do it:

GET /authorize -> GET the test IdP's login form -> POST the credentials -> GET /callback/test (the broker
redeems the upstream code with the test IdP, skips consent for a trusted client) -> POST /token with
the code, PKCE verifier and resource. Five requests; each goes through ``http``, so a ``RoundRobin``
sends consecutive steps to different instances.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from bench.harness.http1 import FORM, Connection, HttpError, Response, RoundRobin, basic_auth, cookie_header

PASSWORD = "bench-password-1"  # every test IdP user's
REDIRECT = "http://127.0.0.1:9/cb"  # the app's redirect URI; never contacted

_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


@dataclass
class Client:
    """An OAuth client registered at the broker (confidential: client_secret_basic)."""

    client_id: str
    secret: str

    @property
    def auth(self) -> bytes:
        return basic_auth(self.client_id, self.secret)


class LoginFailed(HttpError):
    """A step answered something else than the flow expects."""


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def local(url: str) -> str:
    parts = urlsplit(html.unescape(url))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _expect(response: Response, status: int, step: str) -> Response:
    if response.status != status:
        raise LoginFailed(f"{step}: HTTP {response.status}: {response.body[:300]!r}")
    return response


async def sign_in(http: Connection | RoundRobin, app: Client, username: str, resource: str) -> dict:
    """The five requests; the token response (access and refresh token)."""
    verifier, challenge = pkce()
    jar: dict[str, str] = {}
    params = {"response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT, "state": "s",
              "code_challenge": challenge, "code_challenge_method": "S256", "resource": resource}
    step = _expect(await http.request("GET", "/authorize?" + urlencode(params)), 302, "authorize")
    jar.update(step.cookies)
    form = _expect(await http.request("GET", local(step.location()), cookie_header(jar)), 200, "login form")
    jar.update(form.cookies)
    text = form.body.decode()
    fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(text)}
    fields.update(username=username, password=PASSWORD)
    action = _ACTION.search(text)
    if action is None:
        raise LoginFailed("login form: no form action")
    step = _expect(await http.request("POST", local(action.group(1)), FORM + cookie_header(jar),
                                      urlencode(fields).encode()), 302, "login post")
    jar.update(step.cookies)
    step = _expect(await http.request("GET", local(step.location()), cookie_header(jar)), 302, "callback")
    code = parse_qs(urlsplit(step.location()).query).get("code")
    if not code:
        raise LoginFailed(f"callback: no code in {step.location()[:200]}")
    body = urlencode({"grant_type": "authorization_code", "code": code[0], "redirect_uri": REDIRECT,
                      "code_verifier": verifier, "resource": resource}).encode()
    tokens = _expect(await http.request("POST", "/token", FORM + app.auth, body), 200, "token")
    return json.loads(tokens.body)
