"""What ``broker dev`` adds: embedded defaults, demo users and the demo MCP server.

Composition-root material (only ``cli`` imports it). Everything here is for a laptop;
production mode refuses the test IdP these defaults turn on.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import logging
import os
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
                         kind="preregistered", auth=clients.BASIC_AUTH, grant_types=[],
                         may_introspect=True, secret=secret)


def seed_policy(session: Session) -> None:
    """Version 1 of the policy, unless a policy was ever loaded."""
    policies.ensure_initial(session, DEV_POLICY, author="broker dev")


def seed(session: Session, issuer: str) -> list[str]:
    """Register the demo MCP server if absent (or move it to this issuer); return what changed."""
    resource = f"{issuer}/demo/mcp"
    existing = mcp_servers.get(session, DEMO_SERVER_ID)
    if existing is not None:
        if "demo" in existing.tags and existing.resource != resource:
            existing.resource = resource  # `broker dev` ran before on another host or port
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
    """What a newcomer needs on start: where things are and how to sign in."""
    issuer = settings.issuer
    users = ", ".join(f"{u} ({', '.join(g)})" for u, _, g in DEMO_USERS)
    rows = [
        ("issuer", issuer),
        ("discovery", f"{issuer}/.well-known/oauth-authorization-server"),
        ("JWKS", f"{issuer}/jwks"),
        ("test IdP", f"{issuer}/testidp/.well-known/openid-configuration"),
        ("demo users", f"{users}; password: {DEMO_PASSWORD}"),
        ("demo MCP server", f"{issuer}/demo/mcp (server id {DEMO_SERVER_ID})"),
        ("admin console", f"{issuer}/admin (sign in as carol)"),
        ("health", f"{issuer}/readyz"),
        ("data", f"{settings.data_dir} ({settings.database_url})"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["mcp-auth-broker dev mode: for development only, never for production"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)
