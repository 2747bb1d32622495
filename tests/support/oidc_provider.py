"""A real, certified OpenID provider (``oidc-provider`` from npm) as an upstream IdP for e2e tests.

``OidcProvider`` runs ``tests/support/oidc_provider/server.js`` with node, as a child process on a
free loopback port, with the users and the one client (the broker) given here::

    client = ProviderClient("mcp-auth-broker", secrets.token_urlsafe(32),
                            redirect_uris=(f"{broker_issuer}/callback/corp",))
    with OidcProvider(tmp_path / "idp", clients=[client], users=[ALICE, BOB]) as idp:
        idp.issuer                      # http://127.0.0.1:<port>, the [[idps]] issuer for the broker

Its signing keys are kept in the work directory, so a provider restarted on the same port with the
same directory (``OidcProvider(workdir, ..., port=idp.port)``) serves the JWKS the broker has cached,
as a real IdP would after a restart; sessions and grants are in memory and do not survive.

``strict=True`` keeps oidc-provider's own defaults: claims only at userinfo, refresh tokens only for
``offline_access`` asked with ``prompt=consent``; ``revoke_grants(sub)`` then removes a user's grants.

Its login page is a form with ``username`` and ``password``, which ``McpBrowser`` fills in as it does
the test IdP's. Its consent page is its own (hidden ``prompt=consent``, buttons ``decision=allow|deny``):
``ProviderBrowser`` is ``McpBrowser`` plus an answer to that page, and nothing else.

The node packages come from ``tests/support/oidc_provider/package-lock.json``: ``make test`` installs
them; by hand, ``npm ci --prefix tests/support/oidc_provider``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from tests.support.mcp_browser import McpBrowser, parse_forms
from tests.support.processes import ServerProcess

PROJECT = Path(__file__).resolve().parent / "oidc_provider"
DISCOVERY = "/.well-known/openid-configuration"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class OidcProviderUnavailable(RuntimeError):
    """node or the provider's npm packages are missing."""


@dataclass(frozen=True)
class ProviderUser:
    """A user of the provider; ``sub`` (default: the username) is the ID token's subject."""

    username: str
    password: str
    email: str
    name: str
    groups: tuple[str, ...] = ()
    sub: str | None = None


@dataclass(frozen=True)
class ProviderClient:
    """A confidential client (``client_secret_basic``, PKCE required, code flow only)."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...] = ()


class OidcProvider:
    """``node server.js`` on 127.0.0.1:``port``; started by ``start()`` or ``with``, stopped by ``stop()``."""

    def __init__(self, workdir: Path, *, clients: Sequence[ProviderClient], users: Sequence[ProviderUser],
                 port: int | None = None, strict: bool = False):
        self.workdir = workdir
        self.strict = strict  # oidc-provider's defaults: claims at userinfo only, refresh tokens only with consent
        self.clients = list(clients)
        self.users = list(users)
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / f"provider-{len(list(workdir.glob('provider-*.log'))) + 1}.log"  # one per run
        log_path.touch()
        self._process = ServerProcess(
            [_node(), str(PROJECT / "server.js"), "--config", str(workdir / "provider.json"), "--port", "{port}"],
            env={}, log_path=log_path, port=port, cwd=PROJECT)

    @property
    def port(self) -> int:
        return self._process.port

    @property
    def issuer(self) -> str:
        return self._process.base_url

    def start(self, timeout: float = START_TIMEOUT_S) -> OidcProvider:
        """Write the config, start node, return once the discovery document names ``issuer``."""
        _require_packages()
        self._write_config()
        self._process.start(ready_path=DISCOVERY, timeout=timeout)
        try:
            served = httpx.get(self.issuer + DISCOVERY, timeout=5).json()["issuer"]
            if served != self.issuer:
                raise RuntimeError(f"the provider serves issuer {served!r}, expected {self.issuer!r}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (then SIGKILL) its process group; the exit code, 0 for a clean stop."""
        return self._process.stop(timeout)

    def revoke_grants(self, sub: str) -> int:
        """Strict providers: revoke every grant of user ``sub`` (their tokens die); how many were revoked."""
        response = httpx.post(f"{self.issuer}/test/revoke-grants", data={"sub": sub}, timeout=5)
        response.raise_for_status()
        return int(response.json()["revoked"])

    def output(self) -> str:
        """Everything the provider printed (warnings, errors, the ready line)."""
        return self._process.output()

    def _write_config(self) -> None:
        config = {
            "port": self.port,
            "keys_path": str(self.workdir / "signing-keys.json"),
            "strict": self.strict,
            "clients": [{**asdict(c), "redirect_uris": list(c.redirect_uris)} for c in self.clients],
            "users": [{**asdict(u), "groups": list(u.groups)} for u in self.users],
        }
        path = self.workdir / "provider.json"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        path.chmod(0o600)  # passwords and the client secret

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class ProviderBrowser(McpBrowser):
    """``McpBrowser`` that also answers the consent page of the provider at ``provider_issuer``.

    Everything else (the provider's login form, the broker's pages, redirects) is ``McpBrowser``'s.
    ``upstream_consent_pages`` counts the provider's consent pages, ``consent_pages`` the broker's.
    """

    def __init__(self, provider_issuer: str, username: str, password: str, *,
                 upstream_decision: Literal["allow", "deny"] = "allow", **kwargs: Any):
        super().__init__(username, password, **kwargs)
        self.provider_origin = _origin(provider_issuer)
        self.upstream_decision = upstream_decision
        self.upstream_consent_pages = 0

    async def _submit(self, page: httpx.Response) -> httpx.Response:
        if _origin(str(page.url)) == self.provider_origin:
            forms, _ = parse_forms(page.text)
            consent = next((f for f in forms if f.fields.get("prompt") == "consent" and f.method == "post"), None)
            if consent is not None:
                if ("decision", self.upstream_decision) not in consent.buttons:
                    raise self._error(f"the provider's consent form has no {self.upstream_decision!r} button", page)
                self.upstream_consent_pages += 1
                return await self._post_form(page, consent, {"decision": self.upstream_decision})
        return await super()._submit(page)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise OidcProviderUnavailable("node is not on PATH: the OIDC provider tests need Node.js 20 or later")
    return node


def _require_packages() -> None:
    if not (PROJECT / "node_modules" / "oidc-provider" / "package.json").is_file():
        raise OidcProviderUnavailable(
            f"the OIDC provider's npm packages are not installed in {PROJECT / 'node_modules'}: "
            "run `npm ci --prefix tests/support/oidc_provider` (`make test` does)")
