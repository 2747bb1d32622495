"""A headless browser for the MCP SDK's ``OAuthClientProvider``: logs in at the broker like a user.

The SDK's OAuth client hands the authorization URL to ``redirect_handler`` and then awaits
``callback_handler`` for the code. ``McpBrowser`` does what the user's browser would in between::

    GET <issuer>/authorize?...                 -> 302 to the upstream login page
    GET <issuer>/testidp/authorize?...         -> 200 login form (hidden inputs, absolute action)
    POST username + password + hidden inputs   -> 302 ...
    GET <issuer>/callback/test?code=...        -> 302 to the client, or 200 consent page
    POST /consent (pending, csrf_token, decision=approve|deny)
                                               -> 302 <client redirect_uri>?code=...&state=...&iss=...

It stops at the first redirect to the client's ``redirect_uri`` (read from the authorization URL)
and never requests it. Cookies are kept between requests and between logins, redirects are followed
by hand, and everything is bounded (per-request timeout, overall timeout, redirect count).

    browser = McpBrowser(username="alice", password="demo")
    provider = OAuthClientProvider(server_url, client_metadata, storage,
                                   redirect_handler=browser.redirect_handler,
                                   callback_handler=browser.callback_handler)

``callback_handler`` returns the SDK's ``AuthorizationCodeResult`` (code, state, iss): in mcp 2.x
that is the contract, not the ``(code, state)`` tuple of mcp 1.x. An error redirect
(``?error=access_denied``...) makes it raise ``AuthorizationRefused``; ``last_redirect`` keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx
from mcp.shared.auth import AuthorizationCodeResult

REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class BrowserError(Exception):
    """The login flow went somewhere a user could not have continued from."""


class AuthorizationRefused(Exception):
    """The authorization server redirected back to the client with an ``error``."""

    def __init__(self, redirect: ClientRedirect):
        super().__init__(f"{redirect.error}: {redirect.error_description or ''}".rstrip(": "))
        self.redirect = redirect


@dataclass(frozen=True)
class ClientRedirect:
    """The parameters of the redirect to the client's ``redirect_uri``."""

    url: str
    code: str | None = None
    state: str | None = None
    iss: str | None = None
    error: str | None = None
    error_description: str | None = None

    @classmethod
    def parse(cls, url: str) -> ClientRedirect:
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}
        return cls(url=url, code=query.get("code"), state=query.get("state"), iss=query.get("iss"),
                   error=query.get("error"), error_description=query.get("error_description"))


@dataclass
class Form:
    action: str | None
    method: str
    fields: dict[str, str] = field(default_factory=dict)  # hidden inputs
    inputs: list[str] = field(default_factory=list)  # names of every other input
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (name, value) of submit buttons


class _FormParser(HTMLParser):
    """Forms with their inputs and submit buttons; attribute values arrive unescaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._current: Form | None = None
        self.alert: list[str] = []
        self._in_alert = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(action=a.get("action"), method=a.get("method", "get").lower())
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and a.get("name"):
            if a.get("type", "text").lower() == "hidden":
                self._current.fields[a["name"]] = a.get("value", "")
            elif a.get("type", "").lower() == "submit":
                self._current.buttons.append((a["name"], a.get("value", "")))
            else:
                self._current.inputs.append(a["name"])
        elif tag == "button" and self._current is not None and a.get("type", "submit").lower() == "submit":
            self._current.buttons.append((a.get("name", ""), a.get("value", "")))
        if a.get("role") == "alert" or self._in_alert:
            self._in_alert += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        if self._in_alert:
            self._in_alert -= 1

    def handle_data(self, data: str) -> None:
        if self._in_alert and data.strip():
            self.alert.append(data.strip())


def parse_forms(page: str) -> tuple[list[Form], str]:
    """The page's forms, and the text of its ``role="alert"`` element (login errors), if any."""
    parser = _FormParser()
    parser.feed(page)
    parser.close()
    return parser.forms, " ".join(parser.alert)


class McpBrowser:
    """Drives the broker's login and consent pages for ``OAuthClientProvider``; see the module docstring."""

    def __init__(self, username: str = "alice", password: str = "demo", *,
                 decision: Literal["approve", "deny"] = "approve", http: httpx.AsyncClient | None = None,
                 timeout: float = 10.0, total_timeout: float = 30.0, max_redirects: int = 20):
        self.username = username
        self.password = password
        self.decision = decision
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.max_redirects = max_redirects
        self._http = http
        self._owns_http = http is None
        self.history: list[str] = []  # "METHOD url -> status" of every request, for failure messages
        self.last_redirect: ClientRedirect | None = None
        self.consent_pages = 0
        self.logins = 0
        self._logins_this_flow = 0

    async def redirect_handler(self, authorization_url: str) -> None:
        """The SDK's ``redirect_handler``: run the whole browser part now, keep the client redirect."""
        self.last_redirect = None
        with anyio.fail_after(self.total_timeout):
            self.last_redirect = await self.authorize(authorization_url)

    async def callback_handler(self) -> AuthorizationCodeResult:
        """The SDK's ``callback_handler``: the code, state and iss the broker sent the client."""
        redirect = self.last_redirect
        if redirect is None:
            raise BrowserError("callback_handler called before redirect_handler")
        if redirect.error is not None or redirect.code is None:
            raise AuthorizationRefused(redirect)
        return AuthorizationCodeResult(code=redirect.code, state=redirect.state, iss=redirect.iss)

    async def authorize(self, authorization_url: str) -> ClientRedirect:
        """Follow the flow from ``authorization_url`` to the redirect to the client; return its parameters."""
        self._logins_this_flow = 0
        redirect_uri = _query(authorization_url).get("redirect_uri")
        if not redirect_uri:
            raise BrowserError("the authorization URL has no redirect_uri")
        response = await self._send("GET", authorization_url)
        for _ in range(self.max_redirects):
            if response.status_code in REDIRECT_STATUSES:
                location = urljoin(str(response.url), response.headers.get("location", ""))
                if _is_redirect_to(location, redirect_uri):
                    return ClientRedirect.parse(location)
                response = await self._send("GET", location)
            elif response.status_code == 200 and "html" in response.headers.get("content-type", ""):
                response = await self._submit(response)
            else:
                raise self._error(f"unexpected HTTP {response.status_code}", response)
        raise self._error(f"more than {self.max_redirects} redirects or pages", response)

    async def _submit(self, page: httpx.Response) -> httpx.Response:
        forms, alert = parse_forms(page.text)
        consent = next((f for f in forms if "pending" in f.fields and f.method == "post"), None)
        login = next((f for f in forms if "password" in f.inputs and f.method == "post"), None)
        if consent is not None:
            return await self._post_form(page, consent, self._consent_choice(consent, page))
        if login is not None:
            if self._logins_this_flow:
                raise self._error(f"login refused: {alert or 'the login form came back'}", page)
            self._logins_this_flow += 1
            self.logins += 1
            return await self._post_form(page, login, {"username": self.username, "password": self.password})
        raise self._error("a page with neither a login nor a consent form", page)

    def _consent_choice(self, form: Form, page: httpx.Response) -> dict[str, str]:
        self.consent_pages += 1
        if ("decision", self.decision) not in form.buttons:
            raise self._error(f"the consent form has no {self.decision!r} button", page)
        return {"decision": self.decision}

    async def _post_form(self, page: httpx.Response, form: Form, extra: dict[str, str]) -> httpx.Response:
        action = urljoin(str(page.url), form.action or str(page.url))
        return await self._send("POST", action, data={**form.fields, **extra})

    async def _send(self, method: str, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        http = self._client()
        try:
            response = await http.request(method, url, data=data, follow_redirects=False, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise BrowserError(f"{method} {_short(url)} failed: {exc!r}\n{self._trail()}") from exc
        self.history.append(f"{method} {_short(url)} -> {response.status_code}")
        return response

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._http

    def _error(self, what: str, response: httpx.Response) -> BrowserError:
        excerpt = " ".join(response.text.split())[:400]
        return BrowserError(f"{what} at {_short(str(response.url))}: {excerpt}\n{self._trail()}")

    def _trail(self) -> str:
        return "requests so far:\n  " + "\n  ".join(self.history)

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> McpBrowser:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _is_redirect_to(location: str, redirect_uri: str) -> bool:
    """Same scheme, host, port and path as the registered redirect URI (its query, if any, may grow)."""
    target, wanted = urlsplit(location), urlsplit(redirect_uri)
    return (target.scheme, target.netloc, target.path) == (wanted.scheme, wanted.netloc, wanted.path)


def _short(url: str) -> str:
    """The URL without its query: codes and state stay out of failure messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?..." if parts.query else "")
