"""oidc-provider (node) as a load target, pinned to the server core like the broker (see the .mjs)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from bench.harness.http1 import FORM, Links, basic_auth
from bench.harness.servers import start_pinned
from tests.support.postgres import free_port
from tests.support.processes import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("oidc_provider_server.mjs")
MODULES = ROOT / "tests" / "support" / "oidc_provider" / "node_modules"
SECRET = "peer-secret-0123456789abcdef"


def version() -> str:
    package = MODULES / "oidc-provider" / "package.json"
    return json.loads(package.read_text())["version"] if package.exists() else "not installed"


def unavailable() -> str | None:
    """Why the peer cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (MODULES / "oidc-provider" / "package.json").exists():
        return f"oidc-provider is not installed in {MODULES} (npm ci --prefix tests/support/oidc_provider)"
    return None


class PeerTarget:
    name, store, workers = "oidc-provider", "memory", "1"
    refresh_auth = basic_auth("app", SECRET)
    introspect_auth = basic_auth("rs", SECRET)
    machine_auth = basic_auth("m2m", SECRET)
    introspect_path = "/token/introspection"
    # Its in-memory adapter keeps the 1,000 newest entries (oidc-provider's MemoryAdapter, an LRU): the
    # tokens other runs mint push an introspection pool out, so each run mints its own.
    forgets_tokens = True

    def __init__(self) -> None:
        self.ports = [free_port()]
        self.directory = Path(tempfile.mkdtemp(prefix="bench-peer-"))
        self.process: ServerProcess | None = None

    def __enter__(self) -> PeerTarget:
        port = self.ports[0]
        self.process = start_pinned(
            [shutil.which("node") or "node", str(SCRIPT), "--modules", str(MODULES), "--port", str(port),
             "--resource", f"http://127.0.0.1:{port}/mcp", "--secret", SECRET],
            {}, self.directory / "oidc-provider.log", port, "/readyz")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def machine_resource(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}/mcp"

    def server_pids(self) -> list[int]:
        return [self.process.proc.pid] if self.process and self.process.proc else []

    def db_pids(self) -> list[int]:
        return []

    async def _mint(self, links: Links, n: int) -> dict:
        response = await links.connection(self.ports[0]).request("POST", f"/bench/mint?n={n}", FORM)
        if response.status != 200:
            raise RuntimeError(f"oidc-provider mint failed: HTTP {response.status}")
        return json.loads(response.body)

    async def mint_refresh_tokens(self, links: Links, n: int) -> list[str]:
        return (await self._mint(links, n))["refresh_tokens"]

    async def introspectable_tokens(self, links: Links, n: int) -> list[str]:
        return (await self._mint(links, n))["access_tokens"]
