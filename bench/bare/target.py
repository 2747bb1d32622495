"""The bare refresh endpoint as a load target: its table and rows in the broker's database, uvicorn pinned.

Families are inserted directly (one row per virtual client); the app is started with the same worker
count as the broker it is compared with.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sys
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import MetaData, insert

from bench.bare.refresh_app import digest, table
from bench.harness.http1 import Links
from bench.harness.servers import start_pinned
from broker.storage.db import make_engine
from tests.support.postgres import free_port
from tests.support.processes import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


APPS = {"fastapi": "bench.bare.refresh_app:create_app", "raw": "bench.bare.raw_app:create_app"}


class BareTarget:
    """``flavour``: "fastapi" (the least a refresh does on the broker's framework) or "raw" (on a raw ASGI
    callable with the drivers and cryptography directly: this machine's floor for Python)."""

    introspect_auth = b""
    refresh_auth = b""

    def __init__(self, store: str, database_url: str, directory: Path, workers: int, db_root: int | None,
                 flavour: str = "fastapi") -> None:
        self.store, self.workers, self.name = store, str(workers), f"bare {flavour} {store}"
        self.flavour = flavour
        self.database_url, self.directory, self.workers_n, self.db_root = database_url, directory, workers, db_root
        self.ports = [free_port()]
        self.engine = make_engine(database_url)
        self.metadata = MetaData()
        self.families = table(self.metadata)
        self.process: ServerProcess | None = None

    def __enter__(self) -> BareTarget:
        self.metadata.create_all(self.engine)
        key = self.directory / "bare-key.pem"
        key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        env = {"BENCH_BARE_DATABASE_URL": self.database_url, "BENCH_BARE_KEY": str(key),
               "BENCH_BARE_ISSUER": f"http://127.0.0.1:{self.ports[0]}", "PYTHONPATH": str(ROOT)}
        self.process = start_pinned(
            [sys.executable, "-m", "uvicorn", "--factory", APPS[self.flavour], "--host", "127.0.0.1",
             "--port", str(self.ports[0]), "--workers", self.workers, "--no-access-log", "--log-level", "warning"],
            env, self.directory / f"bare-{self.flavour}-w{self.workers}.log", self.ports[0], "/readyz", cwd=ROOT)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.stop()
        self.engine.dispose()

    def server_pids(self) -> list[int]:
        return [self.process.proc.pid] if self.process and self.process.proc else []

    def db_pids(self) -> list[int]:
        return [self.db_root] if self.db_root else []

    async def mint_refresh_tokens(self, links: Links, n: int) -> list[str]:
        tokens = [secrets.token_urlsafe(32) for _ in range(n)]
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as connection:
            connection.execute(insert(self.families), [
                {"id": str(uuid.uuid4()), "client_id": "bare-client", "user_id": f"user-{i}",
                 "resource": "http://127.0.0.1/mcp", "scope": "tools:read", "current_hash": digest(token),
                 "generation": 0, "created_at": now, "last_used_at": now, "expires_at": now + dt.timedelta(days=30)}
                for i, token in enumerate(tokens)])
        return tokens
