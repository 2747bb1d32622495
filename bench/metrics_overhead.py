"""What metrics and rate limiting cost a token request.

1. The middleware alone: a FastAPI app with one ``POST /token`` route that reads its form body,
   called directly over ASGI (no HTTP, no client) N times, bare and wrapped in ``RequestMetrics``
   (count + histogram by route template), ``RateLimit`` (body buffered for the client_id, two
   fixed-window lookups) and both. Prints microseconds per request and the difference.
2. The whole refresh grant in-process (httpx over ASGI, SQLite), alternating rounds with metrics
   (middleware + audit observer) and rate limits on, and both off.

Usage: python bench/metrics_overhead.py [--requests N] [--refreshes N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness.mint import refresh_family  # noqa: E402
from broker import config, dev  # noqa: E402
from broker.app import build_state, prepare  # noqa: E402
from broker.config import MetricsSettings  # noqa: E402
from broker.oauth import clients  # noqa: E402
from broker.observability import Metrics  # noqa: E402
from broker.storage import users  # noqa: E402
from broker.storage.migrate import upgrade  # noqa: E402
from broker.storage.models import User  # noqa: E402
from broker.web import create_app  # noqa: E402
from broker.web.metrics import RequestMetrics  # noqa: E402
from broker.web.ratelimit import RateLimit, RateLimiter, Rule  # noqa: E402

ISSUER = "http://127.0.0.1:8000"
BODY = b"grant_type=refresh_token&refresh_token=" + b"x" * 43 + b"&client_id=bench-client&resource=" + \
    b"http%3A%2F%2F127.0.0.1%3A8000%2Fdemo%2Fmcp"
TOKEN = "bench-metrics-token-0123456789abcdef"


# ---------------------------------------------------------------- 1. the middleware alone

def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/token")
    async def token(request: Request) -> Response:
        await request.body()
        return Response(b'{"access_token":"x"}', media_type="application/json")

    return app


def scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/token", "raw_path": b"/token", "root_path": "", "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/x-www-form-urlencoded"),
                        (b"content-length", str(len(BODY)).encode())],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}


async def run_direct(app: Any, n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    for _ in range(500):  # warm-up: label children, caches
        await app(scope(), receive, send)
    started = time.process_time()  # CPU time: what a request costs, whatever else the machine is doing
    for _ in range(n):
        await app(scope(), receive, send)
    return (time.process_time() - started) / n * 1e6


def stacks() -> dict[str, Any]:
    metrics = Metrics(MetricsSettings(enabled=True, bearer_token=SecretStr(TOKEN)))
    unlimited = {"token": Rule(60, per_client=10**9, per_address=10**9)}
    return {
        "bare": bare_app(),
        "metrics": RequestMetrics(bare_app(), metrics),
        "rate limit": RateLimit(bare_app(), RateLimiter(unlimited)),
        "both": RequestMetrics(RateLimit(bare_app(), RateLimiter(unlimited)), metrics),
    }


async def middleware_alone(n: int, rounds: int) -> dict[str, float]:
    built = stacks()
    results: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, app in built.items():
            results[name].append(await run_direct(app, n))
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"\nmiddleware alone, direct ASGI calls, CPU time, median of {rounds} rounds of {n}:")
    for name, micros in medians.items():
        extra = "" if name == "bare" else f"  (+{micros - medians['bare']:.1f} us)"
        print(f"  {name:10} {micros:7.1f} us/request{extra}")
    return medians


# ---------------------------------------------------------------- 2. the whole refresh grant

async def make_state(directory: str) -> tuple[Any, str, str]:
    settings = config.load(None, env={}, defaults={
        "mode": "dev", "issuer": ISSUER, "data_dir": directory, "logging": {"level": "WARNING", "format": "text"},
        "keys": {"key_encryption_key": config.new_kek()},
        "rate_limits": {"token": {"per_client": 10**8, "per_address": 10**8}}})
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


async def refresh_round(app: Any, client_id: str, token: str, n: int) -> tuple[float, str]:
    """CPU microseconds per refresh (client, app and its worker threads: all in this process)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        started = time.process_time()
        for _ in range(n):
            response = await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                       "client_id": client_id})
            assert response.status_code == 200, response.text
            token = response.json()["refresh_token"]
    return (time.process_time() - started) / n * 1e6, token


def app_for(state: Any, on: bool) -> tuple[Any, Metrics | None]:
    if not on:
        off = state.settings.model_copy(update={"rate_limits": config.RateLimitSettings(enabled=False)})
        return create_app(dataclasses.replace(state, settings=off, metrics=None)), None
    metrics = Metrics(MetricsSettings(enabled=True, bearer_token=SecretStr(TOKEN)),
                      pool=lambda: state.database.engine.pool)
    return create_app(dataclasses.replace(state, metrics=metrics)), metrics


async def whole_grant(n: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        state, client_id, token = await make_state(directory)
        app, _ = app_for(state, on=False)
        _, token = await refresh_round(app, client_id, token, 200)  # warm-up
        results: dict[str, list[float]] = {"on": [], "off": []}
        print(f"\nrefresh grant in-process (SQLite, httpx over ASGI), CPU time, {n} per round:")
        for _ in range(rounds):
            for mode in ("on", "off"):
                app, metrics = app_for(state, on=mode == "on")
                micros, token = await refresh_round(app, client_id, token, n)
                if metrics is not None:
                    metrics.close()
                results[mode].append(micros)
                print(f"  metrics + rate limits {mode:3}: {micros:8.1f} us/refresh")
        state.database.dispose()
    on, off = statistics.median(results["on"]), statistics.median(results["off"])
    print(f"  median: on {on:.1f} us, off {off:.1f} us, overhead {(on - off) / off * 100:.1f} % "
          f"({os.cpu_count()} cores)")
    return {"on": on, "off": off}


async def main(args: argparse.Namespace) -> None:
    alone = await middleware_alone(args.requests, args.rounds)
    extra = alone["both"] - alone["bare"]
    print(f"  => {extra:.1f} us per token request; at the target of 1,000 refreshes/s on 2 cores a request may "
          f"use ~2,000 us of CPU: {extra / 2000 * 100:.2f} %; at 1,600/s on one core (~625 us): "
          f"{extra / 625 * 100:.2f} %")
    if args.refreshes:
        await whole_grant(args.refreshes, args.rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="direct ASGI calls per stack per round")
    parser.add_argument("--refreshes", type=int, default=1000, help="refresh grants per round (0: skip)")
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
