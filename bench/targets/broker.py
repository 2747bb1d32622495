"""A broker set up for the load runs (one database, its clients and users) and `broker serve` instances on it.

The configuration enables the built-in test IdP with ``USERS`` users (the full-login and the minting of
refresh-token families go through it) and trusts a ``FakeIdp`` for ID-JAGs. Three clients, made with
the CLI as an operator would: ``app`` (confidential, trusted: no consent page, authorization code +
refresh), ``rs`` (confidential, may introspect) and ``agent`` (confidential, may redeem ID-JAGs).
Access tokens live 1 h and codes 10 min so nothing prepared expires during a run; that changes no
work per request. Rate limits on /token and /authorize are raised out of reach (``NO_LIMIT``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.http1 import Links
from bench.harness.servers import postmaster_pid, start_pinned
from bench.targets.browser import PASSWORD, REDIRECT, Client, sign_in
from bench.targets.fake_idp import FakeIdp
from tests.support.broker_config import dev_settings, merged, with_testidp, write
from tests.support.postgres import PostgresServer, free_port
from tests.support.processes import BROKER, ServerProcess, everyone_may_reach, run_broker

USERS = 64
# The rate limiter stays on (its cost is part of every request) with limits no run reaches: the load
# comes from one address and a few clients, which the default limits would refuse within a minute.
NO_LIMIT = 10**8  # the largest limit the settings accept
MACHINE = "bench-m2m"  # the client_credentials client's id


@dataclass
class BrokerSetup:
    store: str
    directory: Path
    database_url: str
    ports: list[int]  # the first is the issuer's; scale-out instances use the others
    idp: FakeIdp
    env: dict[str, str] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)
    db_root: int | None = None  # the postmaster, for PostgreSQL
    keep: bool = False  # a server crashed: keep the directory (logs, SQLite file) for a post-mortem

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def resource(self) -> str:
        return f"{self.issuer}/mcp"

    @property
    def config_path(self) -> Path:
        return self.directory / "broker.toml"

    @staticmethod
    def users() -> list[str]:
        return [f"bench-{i}" for i in range(USERS)]


def create(store: str, idp: FakeIdp, pg: PostgresServer | None, instances: int = 3) -> BrokerSetup:
    """A fresh database, migrated, with a server, an allow-all policy and the three clients."""
    directory = Path(tempfile.mkdtemp(prefix=f"bench-broker-{store}-"))
    if store == "sqlite":
        url, db_root = f"sqlite:///{directory / 'broker.db'}", None
    else:
        assert pg is not None
        url, db_root = pg.create_database(f"bench_{uuid.uuid4().hex[:8]}"), postmaster_pid(pg.port)
    setup = BrokerSetup(store, directory, url, [free_port() for _ in range(instances)], idp, db_root=db_root)
    write(setup.config_path, _settings(setup))
    setup.env = {"BROKER_CONFIG": str(setup.config_path)}
    for args in (("db", "upgrade"),
                 ("servers", "add", "--id", "mcp", "--name", "MCP", "--resource", setup.resource, "--scopes",
                  "tools:read"),
                 ("policy", "import", str(_policy(directory)))):
        _cli(setup, *args)
    for name, flags in (("app", ["--trusted", "--redirect-uri", REDIRECT]),
                        ("rs", ["--introspect", "--resource-server", "mcp"]),
                        ("agent", ["--id-jag"]),
                        ("m2m", ["--id", MACHINE, "--client-credentials", "--scope", "tools:read"])):
        record = json.loads(_cli(setup, "clients", "add", "--name", name, "--confidential", *flags, "--json"))
        setup.clients[name] = Client(record["client_id"], record["client_secret"])
    return setup


def _policy(directory: Path) -> Path:
    """Every user may reach the one MCP server, and so may the machine client, for itself."""
    path = everyone_may_reach("mcp", directory)
    path.write_text(path.read_text() + f'\n[[rules]]\nid = "machine"\neffect = "allow"\nscopes = "*"\n\n'
                                       f'[rules.subjects]\nclients = ["{MACHINE}"]\n\n'
                                       f'[rules.targets]\nservers = ["mcp"]\n')
    return path


def remove(setup: BrokerSetup, pg: PostgresServer | None) -> None:
    """Delete the setup's directory (SQLite file, config, logs) and its PostgreSQL database."""
    if setup.keep:
        print(f"  kept {setup.directory} (a server crashed there)", flush=True)
        return
    shutil.rmtree(setup.directory, ignore_errors=True)
    if pg is not None and setup.store == "postgresql":
        pg.drop_database(setup.database_url.rsplit("/", 1)[1])


def _cli(setup: BrokerSetup, *args: str) -> str:
    done = run_broker(*args, env=setup.env)
    if done.returncode != 0:
        raise RuntimeError(f"broker {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def _settings(setup: BrokerSetup) -> dict:
    users = [{"username": u, "password": PASSWORD, "email": f"{u}@example.com", "groups": ["engineering"]}
             for u in setup.users()]
    unlimited = {"per_client": NO_LIMIT, "per_address": NO_LIMIT}
    return dev_settings(setup.issuer, setup.database_url, **merged(with_testidp(setup.issuer, users=users), {
        "tokens": {"access_token_lifetime": 3600, "authorization_code_lifetime": 600},
        "logging": {"level": "WARNING"},
        "rate_limits": {"token": unlimited, "authorize": unlimited},
        "id_jag": {"trusted_issuers": [{"id": "bench-idp", "issuer": setup.idp.issuer,
                                        "jwks_uri": f"{setup.idp.issuer}/jwks", "algorithms": ["ES256"],
                                        "provision_users": True}]}}))


class BrokerTarget:
    """``instances`` `broker serve` processes (``workers`` each) on one setup, pinned to the server core."""

    def __init__(self, setup: BrokerSetup, workers: int, instances: int = 1) -> None:
        self.setup, self.workers_n, self.instances = setup, workers, instances
        self.store = setup.store
        self.workers = str(workers)
        self.name = f"broker {setup.store}" + (f" x{instances}" if instances > 1 else "")
        self.ports = setup.ports[:instances]
        self._processes: list[ServerProcess] = []

    def __enter__(self) -> BrokerTarget:
        try:
            for port in self.ports:
                self._processes.append(start_pinned(
                    [*BROKER, "serve", "--port", str(port), "--workers", str(self.workers_n)], self.setup.env,
                    self.setup.directory / f"serve-{port}-w{self.workers_n}.log", port, "/readyz"))
            # One sign-in alone first: it makes the IdP's group, so that no run measures that one-time work.
            # (Concurrent first sign-ins that race on creating it are handled: ON CONFLICT DO NOTHING.)
            asyncio.run(self.sign_ins(Links(self.ports[:1]), 1))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._processes:
            process.stop()
        self._processes.clear()

    def server_pids(self) -> list[int]:
        return [p.proc.pid for p in self._processes if p.proc is not None]

    def revive(self) -> None:
        """After a crash: show the end of each dead server's log, keep the setup's files, start again."""
        dead = [p for p in self._processes if p.proc is not None and p.proc.poll() is not None]
        if not dead:
            return
        for process in dead:
            tail = "\n    ".join(process.output().splitlines()[-15:])
            print(f"  !! {self.name} on port {process.port} exited with {process.proc.returncode}; log "
                  f"{process.log_path} ends:\n    {tail}", flush=True)
        self.setup.keep = True
        self.__exit__()
        self.__enter__()

    @property
    def refresh_auth(self) -> bytes:
        return self.setup.clients["app"].auth

    @property
    def introspect_auth(self) -> bytes:
        return self.setup.clients["rs"].auth

    @property
    def machine_auth(self) -> bytes:
        return self.setup.clients["m2m"].auth

    @property
    def machine_resource(self) -> str:
        return self.setup.resource

    introspect_path = "/introspect"

    async def sign_ins(self, links: Links, n: int) -> list[dict]:
        """``n`` full sign-ins (users in turn), 8 at a time; their token responses."""
        users = self.setup.users()
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> dict:
            async with gate:
                return await sign_in(links.http(i), self.setup.clients["app"], users[i % len(users)],
                                     self.setup.resource)

        return list(await asyncio.gather(*(one(i) for i in range(n))))

    async def mint_refresh_tokens(self, links: Links, n: int) -> list[str]:
        return [tokens["refresh_token"] for tokens in await self.sign_ins(links, n)]

    async def introspectable_tokens(self, links: Links, n: int) -> list[str]:
        return [tokens["access_token"] for tokens in await self.sign_ins(links, n)]

    def db_pids(self) -> list[int]:
        return [self.setup.db_root] if self.setup.db_root else []
