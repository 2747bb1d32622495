"""tests/support/mcp_browser.py against an httpx.MockTransport that imitates the broker's pages."""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from mcp.shared.auth import AuthorizationCodeResult

from tests.support.mcp_browser import AuthorizationRefused, BrowserError, McpBrowser, parse_forms

ISSUER = "http://127.0.0.1:8000"
REDIRECT_URI = "http://127.0.0.1:33418/callback"
TRICKY = 'a&b "c" <d>'  # hidden values arrive HTML-escaped and must be posted back unescaped

LOGIN_PAGE = """<!doctype html><html><body>
<h1>Test identity provider — development only</h1>
{alert}
<form method="post" action="{issuer}/testidp/authorize">
  <input type="hidden" name="client_id" value="mcp-auth-broker">
  <input type="hidden" name="state" value="upstream-state">
  <input type="hidden" name="tricky" value="{tricky}">
  <p><input id="username" name="username" value="" required></p>
  <p><input id="password" name="password" type="password" required></p>
  <p><button type="submit">Sign in</button></p>
</form></body></html>"""

CONSENT_PAGE = """<!doctype html><html><body>
<h1>Allow Claude to use Demo?</h1>
<form method="post" action="/consent">
  <input type="hidden" name="pending" value="pending-1">
  <input type="hidden" name="csrf_token" value="csrf-1">
  <button type="submit" name="decision" value="approve">Allow</button>
  <button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>"""


def authorization_url(**extra: str) -> str:
    params = {"response_type": "code", "client_id": "client-1", "redirect_uri": REDIRECT_URI,
              "state": "client-state", "code_challenge": "x" * 43, "code_challenge_method": "S256",
              "resource": f"{ISSUER}/demo/mcp", **extra}
    return f"{ISSUER}/authorize?{urlencode(params)}"


class FakeBrokerSite:
    """/authorize -> test IdP login -> /callback/test -> (consent) -> the client's redirect URI."""

    def __init__(self, consent: bool = True, password: str = "demo"):
        self.consent = consent
        self.password = password
        self.posts: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        assert not str(url).startswith(REDIRECT_URI), "the browser must never fetch the client's redirect URI"
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()} if request.method == "POST" else {}
        if form:
            self.posts.append(form)
        route = (request.method, url.path)
        if route == ("GET", "/authorize"):
            # relative Location: the browser resolves it against the current URL
            return httpx.Response(302, headers={"location": "/testidp/authorize?client_id=mcp-auth-broker",
                                                "set-cookie": "broker_session=s1; Path=/; HttpOnly"})
        if route == ("GET", "/testidp/authorize"):
            if "idp_session=i1" in request.headers.get("cookie", ""):  # already logged in upstream
                return httpx.Response(302, headers={"location": f"{ISSUER}/callback/test?code=up&state=upstream-state"})
            return self.login_page()
        if route == ("POST", "/testidp/authorize"):
            assert form["tricky"] == TRICKY and form["state"] == "upstream-state"
            if (form.get("username"), form.get("password")) != ("alice", self.password):
                return self.login_page(alert='<p role="alert" id="login-error"><strong>Wrong username or '
                                             'password.</strong></p>')
            return httpx.Response(303, headers={"location": f"{ISSUER}/callback/test?code=up&state=upstream-state",
                                                "set-cookie": "idp_session=i1; Path=/testidp"})
        if route == ("GET", "/callback/test"):
            assert "broker_session=s1" in request.headers["cookie"]
            if self.consent:
                return httpx.Response(200, html=CONSENT_PAGE)
            return self.to_client(code="code-1")
        if route == ("POST", "/consent"):
            assert "broker_session=s1" in request.headers["cookie"]
            assert (form["pending"], form["csrf_token"]) == ("pending-1", "csrf-1")
            if form["decision"] == "approve":
                return self.to_client(code="code-1")
            return self.to_client(error="access_denied", error_description="The user said no")
        if route == ("GET", "/loop"):
            return httpx.Response(302, headers={"location": "/loop"})
        return httpx.Response(500, text="Internal Server Error")

    def login_page(self, alert: str = "") -> httpx.Response:
        return httpx.Response(200, html=LOGIN_PAGE.format(issuer=ISSUER, tricky=html.escape(TRICKY), alert=alert))

    def to_client(self, **params: str) -> httpx.Response:
        query = urlencode({**params, "state": "client-state", "iss": ISSUER})
        return httpx.Response(302, headers={"location": f"{REDIRECT_URI}?{query}"})


def browser_for(site: FakeBrokerSite, **kwargs: object) -> McpBrowser:
    return McpBrowser(http=httpx.AsyncClient(transport=httpx.MockTransport(site)), **kwargs)  # type: ignore[arg-type]


async def test_login_and_consent_end_at_the_client_redirect() -> None:
    site = FakeBrokerSite()
    browser = browser_for(site)
    await browser.redirect_handler(authorization_url())
    result = await browser.callback_handler()
    assert result == AuthorizationCodeResult(code="code-1", state="client-state", iss=ISSUER)
    assert site.posts[0]["username"] == "alice" and site.posts[0]["password"] == "demo"
    assert site.posts[1] == {"pending": "pending-1", "csrf_token": "csrf-1", "decision": "approve"}
    assert browser.consent_pages == 1 and browser.logins == 1
    assert [h.split(" -> ")[0] for h in browser.history] == [
        "GET http://127.0.0.1:8000/authorize?...", "GET http://127.0.0.1:8000/testidp/authorize?...",
        "POST http://127.0.0.1:8000/testidp/authorize", "GET http://127.0.0.1:8000/callback/test?...",
        "POST http://127.0.0.1:8000/consent"]


async def test_without_a_consent_page_the_callback_redirects_straight_to_the_client() -> None:
    browser = browser_for(FakeBrokerSite(consent=False))
    await browser.redirect_handler(authorization_url())
    assert (await browser.callback_handler()).code == "code-1"
    assert browser.consent_pages == 0


async def test_cookies_persist_so_a_second_flow_skips_the_upstream_login() -> None:
    browser = browser_for(FakeBrokerSite(consent=False))
    for _ in range(2):
        await browser.redirect_handler(authorization_url())
        assert (await browser.callback_handler()).code == "code-1"
    assert browser.logins == 1


async def test_deny_returns_the_error_redirect() -> None:
    browser = browser_for(FakeBrokerSite(), decision="deny")
    await browser.redirect_handler(authorization_url())
    with pytest.raises(AuthorizationRefused, match="access_denied") as refused:
        await browser.callback_handler()
    redirect = refused.value.redirect
    assert (redirect.error, redirect.error_description, redirect.iss, redirect.state) == (
        "access_denied", "The user said no", ISSUER, "client-state")
    assert browser.last_redirect == redirect


async def test_wrong_password_is_reported_with_the_page_message() -> None:
    browser = browser_for(FakeBrokerSite(), password="wrong")
    with pytest.raises(BrowserError, match="login refused: Wrong username or password"):
        await browser.redirect_handler(authorization_url())


async def test_redirect_loops_are_bounded() -> None:
    browser = browser_for(FakeBrokerSite(), max_redirects=5)
    with pytest.raises(BrowserError, match="more than 5 redirects"):
        await browser.authorize(f"{ISSUER}/loop?redirect_uri={REDIRECT_URI}")


async def test_unexpected_responses_fail_with_the_request_trail() -> None:
    browser = browser_for(FakeBrokerSite())
    with pytest.raises(BrowserError, match="unexpected HTTP 500") as failed:
        await browser.authorize(f"{ISSUER}/nowhere?redirect_uri={REDIRECT_URI}&code=secret")
    assert "secret" not in str(failed.value)


async def test_callback_before_redirect_and_url_without_redirect_uri_are_errors() -> None:
    browser = browser_for(FakeBrokerSite())
    with pytest.raises(BrowserError):
        await browser.callback_handler()
    with pytest.raises(BrowserError, match="no redirect_uri"):
        await browser.redirect_handler(f"{ISSUER}/authorize?client_id=x")


async def test_owned_http_client_is_closed() -> None:
    async with McpBrowser() as browser:
        assert browser._client() is not None
    assert browser._http is None


def test_parse_forms_reads_hidden_inputs_buttons_and_alerts() -> None:
    forms, alert = parse_forms(LOGIN_PAGE.format(issuer=ISSUER, tricky=html.escape(TRICKY),
                                                 alert='<div role="alert"><b>Nope.</b> Try again</div>'))
    assert alert == "Nope. Try again"
    (form,) = forms
    assert form.action == f"{ISSUER}/testidp/authorize" and form.method == "post"
    assert form.fields == {"client_id": "mcp-auth-broker", "state": "upstream-state", "tricky": TRICKY}
    assert form.inputs == ["username", "password"]
    (consent,) = parse_forms(CONSENT_PAGE)[0]
    assert consent.buttons == [("decision", "approve"), ("decision", "deny")]
    assert urlsplit(consent.action or "").path == "/consent"
