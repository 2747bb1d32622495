"""What ``broker dev`` adds: embedded defaults, demo users and the demo MCP server.

Composition-root material (only ``cli`` and ``app`` import it). Everything here is for a laptop;
production mode refuses the test IdP these defaults turn on.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from broker import bundled, config
from broker.oauth import clients
from broker.registry import admin as registry
from broker.registry import policies
from broker.storage import clients as clients_repo
from broker.storage import mcp_servers
from broker.storage.enums import ClientKind
from broker.storage.models import utcnow

log = logging.getLogger("broker.dev")

DEMO_PASSWORD = "demo"
DEMO_USERS = [
    ("alice", "Alice Anders", ["engineering"]),
    ("bob", "Bob Brown", ["sales"]),
    ("carol", "Carol Chen", ["it-admins", "security"]),
]
DEMO_SERVER_ID = "demo"
DEMO_SCOPES = {"tools:read": "List the demo server's tools", "tools:call": "Call the demo server's tools"}
TESTIDP_CLIENT_ID = "mcp-auth-broker"
DEV_POLICY = """# The dev policy: engineering reaches the demo MCP server; sales (bob) gets nothing.
[[rules]]
id = "engineering-demo"
description = "Engineering may use the demo MCP server"
effect = "allow"
scopes = "*"

[rules.subjects]
groups = ["engineering"]

[rules.targets]
servers = ["demo"]
"""
KEK_FILE = "dev-key-encryption-key"
ISSUER_FILE = "dev-issuer"  # written by `broker dev`, so other commands on this data dir act on the same broker


def issuer_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def ensure_kek_file(data_dir: Path) -> Path:
    """The dev key-encryption key, created once (mode 0600) inside the data directory."""
    path = data_dir / KEK_FILE
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(config.new_kek() + "\n")
    return path


def load_settings(path: Path | None, data_dir: Path | None, defaults: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None) -> config.Settings:
    """Settings for a command: the file and environment over ``defaults`` (``broker dev``'s own), or over
    the dev defaults of a data directory ``broker dev`` made (unless the configuration says production).

    A file then overrides only the keys it names; the dev defaults it leaves dangling are dropped.
    """
    env = os.environ if env is None else env
    if defaults is None and not _production(path, env):
        defaults = defaults_for_data_dir(data_dir or Path(env.get("BROKER_DATA_DIR", "var")))
    overrides = {"data_dir": str(data_dir)} if data_dir else {}
    return config.load(path, env=env, defaults=defaults, overrides=overrides,
                       finish=_drop_dangling(defaults) if defaults else None)


def _production(path: Path | None, env: Mapping[str, str]) -> bool:
    """Whether the file or the environment asks for production mode (then no dev defaults apply)."""
    if env.get("BROKER_MODE") == config.Mode.PRODUCTION:
        return True
    try:
        return path is not None and config.read_file(path).get("mode") == config.Mode.PRODUCTION
    except config.ConfigError:
        return False  # config.load reports it


def _drop_dangling(defaults: Mapping[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Drop the dev test IdP when the test IdP is off, and the trust in its ID-JAGs when it is not an IdP."""
    dev_idps = list(defaults.get("idps", []))
    dev_trusted = list(defaults.get("id_jag", {}).get("trusted_issuers", []))

    def finish(raw: dict[str, Any]) -> None:
        testidp = raw.get("testidp")
        testidp_on = isinstance(testidp, dict) and testidp.get("enabled") is True
        idps = raw.get("idps")
        if isinstance(idps, list) and not testidp_on:
            raw["idps"] = idps = [idp for idp in idps if idp not in dev_idps]
        ids = {idp.get("id") for idp in idps if isinstance(idp, dict)} if isinstance(idps, list) else set()
        id_jag = raw.get("id_jag")
        if isinstance(id_jag, dict) and isinstance(id_jag.get("trusted_issuers"), list):
            id_jag["trusted_issuers"] = [t for t in id_jag["trusted_issuers"]
                                         if t not in dev_trusted or (testidp_on and t.get("idp") in ids)]

    return finish


def defaults_for_data_dir(data_dir: Path) -> dict[str, Any] | None:
    """The dev defaults of a data directory ``broker dev`` created, for other commands run on it; else None."""
    issuer_file = data_dir / ISSUER_FILE
    if not (data_dir / KEK_FILE).exists() or not issuer_file.exists():
        return None
    parts = urlsplit(issuer_file.read_text().strip())
    return defaults(parts.hostname or "127.0.0.1", parts.port or 80, data_dir)


def defaults(host: str, port: int, data_dir: Path) -> dict[str, Any]:
    """Settings under the config file when running ``broker dev``."""
    issuer = issuer_for(host, port)
    kek_file = ensure_kek_file(data_dir)
    (data_dir / ISSUER_FILE).write_text(issuer + "\n")
    client_secret = _derived_secret(kek_file, "testidp-client-secret")
    return {
        "mode": "dev",
        "issuer": issuer,
        "data_dir": str(data_dir),
        "server": {"host": host, "port": port},
        "logging": {"format": "text"},
        "registration": {"enabled": True},
        "keys": {"key_encryption_key_file": str(kek_file)},
        "testidp": {
            "enabled": True,
            "users": [{"username": u, "password": DEMO_PASSWORD, "email": f"{u}@example.com", "name": n,
                       "groups": g} for u, n, g in DEMO_USERS],
            "clients": [{"client_id": TESTIDP_CLIENT_ID, "client_secret": client_secret,
                         "redirect_uris": [f"{issuer}/callback/test", f"{issuer}/admin/callback/test"]}],
            "id_jag_audiences": [issuer],
        },
        "admin": {"admin_groups": ["it-admins"], "security_groups": ["security"]},
        "idps": [{"id": "test", "type": "test", "display_name": "Test IdP (development only)",
                  "issuer": f"{issuer}/testidp", "client_id": TESTIDP_CLIENT_ID, "client_secret": client_secret}],
        # Enterprise-Managed Authorization: the test IdP's ID-JAGs are redeemed here (docs/enterprise-managed.md);
        # its subjects are the test IdP's users, so someone who signed in once is recognised.
        "id_jag": {"trusted_issuers": [{"id": "testidp", "issuer": f"{issuer}/testidp",
                                        "jwks_uri": f"{issuer}/testidp/jwks", "algorithms": ["ES256"], "idp": "test"}]},
    }


def seed_feed_client(session: Session, secret: str) -> None:
    """The demo MCP server's own client, allowed to read the revocation feed."""
    if clients_repo.get(session, DEMO_FEED_CLIENT_ID) is None:
        clients.register(session, client_id=DEMO_FEED_CLIENT_ID, name="Demo MCP server (revocation feed)",
                         kind=ClientKind.PREREGISTERED, auth=clients.BASIC_AUTH, grant_types=[],
                         may_introspect=True, secret=secret, resource_servers=["demo"])


def seed_policy(session: Session) -> None:
    """Version 1 of the policy, unless a policy was ever loaded."""
    policies.ensure_initial(session, DEV_POLICY, author="broker dev")


def seed(session: Session, issuer: str) -> list[str]:
    """Register the demo MCP server if absent (or move it to this issuer); return what changed."""
    resource = f"{issuer}/demo/mcp"
    existing = mcp_servers.get(session, DEMO_SERVER_ID)
    if existing is not None:
        if "demo" in existing.tags and existing.resource != resource:
            # `broker dev` ran before on another host or port
            mcp_servers.save(session, existing._replace(resource=resource, updated_at=utcnow()))
            return [f"MCP server {DEMO_SERVER_ID} moved to {resource}"]
        return []
    registry.add(session, registry.ServerSpec(
        id=DEMO_SERVER_ID, name="Demo MCP server", description="The example MCP server that `broker dev` serves",
        resource=resource, scopes=DEMO_SCOPES, default_scopes=list(DEMO_SCOPES), tags=["demo"]))
    return [f"MCP server {DEMO_SERVER_ID}"]


DEMO_FEED_CLIENT_ID = "demo-mcp-server"


def demo_feed_secret(settings: config.Settings) -> str:
    kek = settings.key_encryption_key()
    assert kek is not None
    return hmac.new(kek, b"demo-mcp-server feed client", hashlib.sha256).hexdigest()


def demo_app(issuer: str, feed_secret: str | None = None) -> Any | None:
    """The example MCP server (examples/protected_server.py, shipped in ``broker.bundled``) as an ASGI app.

    With ``feed_secret`` it follows the broker's revocation feed as client ``demo-mcp-server``.
    """
    if not bundled.DEMO_SERVER.exists():
        log.warning("%s not found: the demo MCP server is not served", bundled.DEMO_SERVER)
        return None
    spec = importlib.util.spec_from_file_location("mcp_auth_broker_demo", bundled.DEMO_SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    feed = module.RevocationFeed(issuer, DEMO_FEED_CLIENT_ID, feed_secret) if feed_secret else None
    return module.create_app(issuer, f"{issuer}/demo/mcp", revocations=feed)


def _derived_secret(kek_file: Path, label: str) -> str:
    key = kek_file.read_bytes().strip()
    return hmac.new(key, label.encode(), hashlib.sha256).hexdigest()


def banner(settings: config.Settings) -> str:
    """What a newcomer needs on start: where things are and, with the test IdP, how to sign in."""
    issuer = settings.issuer
    rows = [
        ("issuer", issuer),
        ("discovery", f"{issuer}/.well-known/oauth-authorization-server"),
        ("JWKS", f"{issuer}/jwks"),
        *_test_idp_rows(settings),
        ("demo MCP server", f"{issuer}/demo/mcp (server id {DEMO_SERVER_ID})"),
        ("admin console", f"{issuer}/admin" + _console_hint(settings)),
        ("health", f"{issuer}/readyz"),
        ("data", f"{settings.data_dir} ({settings.database_url})"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["mcp-auth-broker dev mode: for development only, never for production"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


def _test_idp_rows(settings: config.Settings) -> list[tuple[str, str]]:
    """The test IdP and its users, when it runs (a --config may turn it off or bring other users)."""
    if not settings.testidp.enabled:
        return []
    rows = [("test IdP", f"{settings.issuer}/testidp/.well-known/openid-configuration")]
    users = settings.testidp.users
    if users:
        listed = ", ".join(f"{u.username} ({', '.join(u.groups)})" if u.groups else u.username for u in users)
        if all(u.password.get_secret_value() == DEMO_PASSWORD for u in users):
            rows.append(("demo users", f"{listed}; password: {DEMO_PASSWORD}"))
        else:
            rows.append(("test IdP users", listed))
    return rows


def _console_hint(settings: config.Settings) -> str:
    admins = set(settings.admin.admin_groups)
    names = [u.username for u in settings.testidp.users if admins & set(u.groups)] if settings.testidp.enabled else []
    return f" (sign in as {names[0]})" if names else ""
