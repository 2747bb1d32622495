"""ID-JAG (jwt-bearer) grants per second against a real `broker serve`, on SQLite and on PostgreSQL.

A fake enterprise IdP (this process) publishes its JWKS over loopback HTTP and signs one ID-JAG per
request in advance (unique jti, 100 users), so the broker does the whole grant each time: parse,
ES256 verify, jti insert, user lookup, policy, access-token signature, audit event. The load
generator (asyncio + httpx, C concurrent clients, bounded request count) runs in this process; the
broker in its own. PostgreSQL is started from the machine's packages (tests/support/postgres.py).

Prints requests/s, p50/p95/p99 latency and errors per store. Usage:
    python bench/id_jag_grants.py [--requests N] [--concurrency C] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broker import config  # noqa: E402
from tests.support.postgres import PostgresServer, free_port  # noqa: E402
from tests.support.processes import BROKER, ServerProcess, everyone_may_reach, run_broker  # noqa: E402

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class FakeIdp:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        body = json.dumps({"keys": [{**jwk, "kid": "bench-1", "alg": "ES256", "use": "sig"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def assertions(self, n: int, audience: str, client_id: str, resource: str) -> list[str]:
        now = int(time.time())
        return [jwt.encode({"iss": self.issuer, "sub": f"user-{i % 100}", "aud": audience, "client_id": client_id,
                            "jti": uuid.uuid4().hex, "iat": now, "exp": now + 600, "resource": resource,
                            "scope": "tools:read", "email": f"user-{i % 100}@example.com", "email_verified": True},
                           self.key, algorithm="ES256", headers={"typ": "oauth-id-jag+jwt", "kid": "bench-1"})
                for i in range(n)]


def configure(directory: Path, database_url: str, port: int, idp: FakeIdp) -> tuple[dict[str, str], str, str, str]:
    issuer = f"http://127.0.0.1:{port}"
    path = directory / "broker.toml"
    path.write_text(f'''mode = "dev"
issuer = "{issuer}"
[database]
url = "{database_url}"
[keys]
key_encryption_key = "{config.new_kek()}"
[logging]
level = "WARNING"
format = "text"
[[id_jag.trusted_issuers]]
id = "bench-idp"
issuer = "{idp.issuer}"
jwks_uri = "{idp.issuer}/jwks"
algorithms = ["ES256"]
provision_users = true
''')
    env = {"BROKER_CONFIG": str(path)}
    resource = f"{issuer}/mcp"
    for args in (("db", "upgrade"),
                 ("servers", "add", "--id", "mcp", "--name", "MCP", "--resource", resource, "--scopes", "tools:read"),
                 ("policy", "import", str(everyone_may_reach("mcp", directory)))):
        done = run_broker(*args, env=env)
        assert done.returncode == 0, done.stderr
    added = run_broker("clients", "add", "--name", "agent", "--confidential", "--id-jag", "--json", env=env)
    record = json.loads(added.stdout)
    return env, record["client_id"], record["client_secret"], resource


async def load(base: str, auth: tuple[str, str], assertions: list[str], concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    queue = iter(assertions)

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for assertion in queue:
            started = time.perf_counter()
            response = await http.post("/token", data={"grant_type": JWT_BEARER, "assertion": assertion}, auth=auth)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {"rate": len(latencies) / elapsed, "p50": quantiles[49] * 1000, "p95": quantiles[94] * 1000,
            "p99": quantiles[98] * 1000, "errors": errors}


def run_store(store: str, requests: int, concurrency: int, idp: FakeIdp, pg: PostgresServer | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory / 'broker.db'}" if store == "sqlite" else pg.create_database(  # type: ignore
            f"bench_{uuid.uuid4().hex[:8]}")
        port = free_port()
        env, client_id, secret, resource = configure(directory, url, port, idp)
        issuer = f"http://127.0.0.1:{port}"
        with ServerProcess([*BROKER, "serve", "--port", str(port)], env=env, log_path=directory / "serve.log",
                           port=port) as server:
            warm = idp.assertions(300, issuer, client_id, resource)  # first sight of 100 users, key fetch
            asyncio.run(load(server.base_url, (client_id, secret), warm, concurrency))
            for round_no in range(3):
                result = asyncio.run(load(server.base_url, (client_id, secret),
                                          idp.assertions(requests, issuer, client_id, resource), concurrency))
                print(f"{store:10} round {round_no + 1}: {result['rate']:7.1f} grants/s  p50 {result['p50']:6.1f} ms  "
                      f"p95 {result['p95']:6.1f} ms  p99 {result['p99']:6.1f} ms  errors {result['errors']:.0f}  "
                      f"({concurrency} clients, 1 worker, {os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args()
    idp = FakeIdp()
    stores = args.stores.split(",")
    pg = PostgresServer().start() if "postgresql" in stores else None
    try:
        for store in stores:
            run_store(store, args.requests, args.concurrency, idp, pg)
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
