"""What auditing costs the token endpoint: refresh-grant throughput with the audit log on and off.

In-process (httpx over ASGI, one event loop), SQLite in a temp dir, one client, one refresh-token
family rotated on every request, exactly as a real client would. "Off" replaces the audit writer
with a no-op for the measurement only; the broker has no switch to turn auditing off.
Prints requests/s per round and the overhead. Usage: python bench/token_audit_overhead.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness.mint import refresh_family  # noqa: E402
from broker import audit, config, dev  # noqa: E402
from broker.app import build_state, prepare  # noqa: E402
from broker.oauth import clients  # noqa: E402
from broker.storage import users  # noqa: E402
from broker.storage.migrate import upgrade  # noqa: E402
from broker.storage.models import User  # noqa: E402
from broker.web import create_app  # noqa: E402

ISSUER = "http://127.0.0.1:8000"


async def make_state(directory: str):
    settings = config.load(None, env={}, defaults={
        "mode": "dev", "issuer": ISSUER, "data_dir": directory, "logging": {"level": "WARNING", "format": "text"},
        "keys": {"key_encryption_key": config.new_kek()},
        "rate_limits": {"enabled": False}})  # one client at one address, far past any per-client limit
    state = build_state(settings)
    upgrade(state.database)
    prepare(state)
    with state.database.transaction() as session:
        dev.seed(session, ISSUER)
        dev.seed_policy(session)
        client = clients.register(session, name="bench", kind="preregistered", redirect_uris=["http://127.0.0.1:9/cb"])
        user = User(email="alice@example.com", display_name="Alice")
        session.add(user)
        session.flush()
        users.set_groups(session, user.id, "idp:test", ["engineering"])
        client_id, user_id = client.row.id, user.id
    token = await refresh_family(state, client_id=client_id, user_id=user_id, resource=f"{ISSUER}/demo/mcp",
                                 scopes=["tools:read", "tools:call"])
    return state, client_id, token


async def _no_record(*args: object, **kwargs: object) -> None:
    return None


async def run_round(http: httpx.AsyncClient, client_id: str, token: str, n: int) -> tuple[float, str]:
    started = time.perf_counter()
    for _ in range(n):
        response = await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                   "client_id": client_id})
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
    return n / (time.perf_counter() - started), token


async def main(requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        state, client_id, token = await make_state(directory)
        app = create_app(state)
        real_record = audit.record_hot
        results: dict[str, list[float]] = {"on": [], "off": []}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
            _, token = await run_round(http, client_id, token, 200)  # warm-up
            for _ in range(rounds):
                for mode in ("on", "off"):
                    audit.record_hot = real_record if mode == "on" else _no_record  # type: ignore
                    rate, token = await run_round(http, client_id, token, requests)
                    results[mode].append(rate)
                    print(f"audit {mode:3}: {rate:8.1f} refreshes/s")
            audit.record_hot = real_record
        on, off = statistics.median(results["on"]), statistics.median(results["off"])
        print(f"\nmedian: audit on {on:.1f}/s, off {off:.1f}/s, overhead {(off - on) / off * 100:.1f} % "
              f"({os.cpu_count()} cores, in-process, SQLite)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
