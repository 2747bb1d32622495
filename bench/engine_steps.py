"""CPU per request of the token engine's hot paths, in-process, without HTTP: the broker's ASGI app called directly.

What the load runs cannot show on a shared machine: the CPU one refresh (or client_credentials grant,
or introspection) costs inside the broker's application, measured with ``time.process_time`` over a few
thousand requests, several rounds, the median kept. No uvicorn, no sockets: the numbers are the app's own
(the load runs add uvicorn's HTTP parsing and the event loop's network work). ``--profile`` prints
cProfile's top functions for one round instead. SQLite in a temp dir, or ``--store postgresql`` (a private
cluster). Usage:

    .venv/bin/python bench/engine_steps.py [--requests 3000] [--rounds 5] [--scenario refresh] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness.mint import refresh_family  # noqa: E402
from broker import config, dev  # noqa: E402
from broker.app import build_state, prepare  # noqa: E402
from broker.oauth import clients  # noqa: E402
from broker.registry import policies  # noqa: E402
from broker.storage import users  # noqa: E402
from broker.storage.migrate import upgrade  # noqa: E402
from broker.storage.models import User  # noqa: E402
from broker.web import create_app  # noqa: E402

ISSUER = "http://127.0.0.1:8000"
RESOURCE = f"{ISSUER}/demo/mcp"
MACHINE_RULE = ('\n[[rules]]\nid = "machine"\neffect = "allow"\nscopes = "*"\n'
                f'[rules.subjects]\nclients = ["bench-app"]\n[rules.targets]\nservers = ["{dev.DEMO_SERVER_ID}"]\n')


class Setup:
    def __init__(self, app: Any, basic: str, token: str, introspect_basic: str, access_token: str) -> None:
        self.app, self.basic, self.token = app, basic, token
        self.introspect_basic, self.access_token = introspect_basic, access_token

    def another(self, token: str) -> Setup:
        """The same app and clients, another refresh-token family (another concurrent client)."""
        return Setup(self.app, self.basic, token, self.introspect_basic, self.access_token)


def _basic(client_id: str, secret: str | None) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def setup(directory: str, database_url: str | None, clients_n: int = 1) -> list[Setup]:
    settings = config.load(None, env={}, defaults={
        "mode": "dev", "issuer": ISSUER, "data_dir": directory, "logging": {"level": "WARNING", "format": "text"},
        "keys": {"key_encryption_key": config.new_kek()},
        **({"database": {"url": database_url}} if database_url else {}),
        "rate_limits": {"token": {"per_client": 10**8, "per_address": 10**8}}})  # on, out of reach (as the load runs)
    state = build_state(settings)
    upgrade(state.database)
    prepare(state)
    with state.database.transaction() as session:
        dev.seed(session, ISSUER)
        client = clients.register(session, client_id="bench-app", name="bench", kind="preregistered",
                                  auth=clients.BASIC_AUTH, redirect_uris=["http://127.0.0.1:9/cb"],
                                  grant_types=["authorization_code", "refresh_token", "client_credentials"],
                                  scopes=["tools:read"])
        rs = clients.register(session, name="rs", kind="preregistered", auth=clients.BASIC_AUTH, may_introspect=True,
                              grant_types=["client_credentials"], resource_servers=[dev.DEMO_SERVER_ID])
        policies.import_policy(session, dev.DEV_POLICY + MACHINE_RULE, issuer=ISSUER, author="bench")
        user = User(email="alice@example.com", display_name="Alice")
        session.add(user)
        session.flush()
        users.set_groups(session, user.id, "idp:test", ["engineering"])
        client_id, secret, user_id = client.row.id, client.secret, user.id
        rs_basic = _basic(rs.row.id, rs.secret)
    tokens = [await refresh_family(state, client_id=client_id, user_id=user_id, resource=RESOURCE,
                                   scopes=["tools:read", "tools:call"]) for _ in range(clients_n)]
    token = tokens[0]
    app = create_app(state)
    await _lifespan(app)
    s = Setup(app, _basic(client_id, secret), token, rs_basic, "")
    status, body = await call(app, "/token", f"grant_type=refresh_token&refresh_token={token}".encode(), s.basic)
    assert status == 200, body
    answer = json.loads(body)
    s.token, s.access_token = answer["refresh_token"], answer["access_token"]
    return [s, *(s.another(t) for t in tokens[1:])]


async def _lifespan(app: Any) -> None:
    """Start the app (its lifespan opens the hot lane); the app stays up for the process."""
    started = asyncio.Event()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})

    async def receive() -> dict[str, Any]:
        return await queue.get()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    asyncio.get_running_loop().create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    await started.wait()


async def call(app: Any, path: str, body: bytes, authorization: str) -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/x-www-form-urlencoded"),
                         (b"content-length", str(len(body)).encode()), (b"authorization", authorization.encode())]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.sleep(0)  # the request arrives from the loop, as over a socket: concurrent clients interleave
    await app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def one(s: Setup, scenario: str) -> None:
    if scenario == "refresh":
        status, body = await call(s.app, "/token", b"grant_type=refresh_token&refresh_token=" + s.token.encode(),
                                  s.basic)
        assert status == 200, body
        s.token = json.loads(body)["refresh_token"]
    elif scenario == "client-credentials":
        status, body = await call(s.app, "/token", b"grant_type=client_credentials&resource=" + RESOURCE.encode(),
                                  s.basic)
        assert status == 200, body
    else:
        status, body = await call(s.app, "/introspect", b"token=" + s.access_token.encode(), s.introspect_basic)
        assert status == 200 and b'"active":true' in body, body


async def each(clients: list[Setup], scenario: str, n: int) -> None:
    """``n`` requests in all, from every client at once (each its own closed loop)."""
    async def loop(s: Setup, k: int) -> None:
        for _ in range(k):
            await one(s, scenario)
    await asyncio.gather(*(loop(s, n // len(clients)) for s in clients))


async def rounds(clients: list[Setup], scenario: str, n: int, count: int, profile: bool) -> list[float]:
    await each(clients, scenario, 200)
    costs = []
    for _ in range(count):
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()
        started = time.process_time()
        await each(clients, scenario, n)
        costs.append((time.process_time() - started) / n * 1e6)
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
            break
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", default="refresh", choices=("refresh", "client-credentials", "introspect"))
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients (refresh: one family each)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    pg = None
    if args.store == "postgresql":
        from tests.support.postgres import PostgresServer
        pg = PostgresServer().start()
    try:
        with tempfile.TemporaryDirectory() as directory:
            url = pg.create_database("steps") if pg is not None else None
            costs = uvloop.run(_run(directory, url, args))  # as uvicorn serves
    finally:
        if pg is not None:
            pg.stop()
    print(f"{args.scenario} ({args.store}): CPU us per request, rounds: {', '.join(f'{c:.0f}' for c in costs)}; "
          f"median {statistics.median(costs):.0f}, min {min(costs):.0f}")


async def _run(directory: str, url: str | None, args: argparse.Namespace) -> list[float]:
    clients = await setup(directory, url, args.clients)
    return await rounds(clients, args.scenario, args.requests, args.rounds, args.profile)


if __name__ == "__main__":
    main()
