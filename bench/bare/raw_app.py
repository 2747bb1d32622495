"""This machine's floor for Python: the bare refresh (``refresh_app``) on a raw ASGI callable, without a framework.

It reads the body, parses the form, runs ONE rotation statement in its own transaction and makes ONE ES256
signature, with the drivers and the crypto library directly: ``sqlite3`` on the event loop (``BEGIN
IMMEDIATE``) or asyncpg, and ``cryptography``. No client authentication, no user, policy or audit. Served by
uvicorn like the broker:

    BENCH_BARE_DATABASE_URL=... BENCH_BARE_KEY=key.pem BENCH_BARE_ISSUER=http://127.0.0.1:PORT \\
        uvicorn --factory bench.bare.raw_app:create_app --workers N
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from bench.bare.refresh_app import TABLE

COLUMNS = "id, client_id, user_id, resource, scope"
JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
Rotate = Callable[[str, str, dt.datetime], Awaitable[tuple[Any, ...] | None]]


def b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def signer(key: ec.EllipticCurvePrivateKey) -> Callable[[dict[str, Any]], str]:
    header = b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": "bare"}, separators=(",", ":")).encode())

    def sign(claims: dict[str, Any]) -> str:
        signing_input = header + b"." + b64(json.dumps(claims, separators=(",", ":")).encode())
        r, s = utils.decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return (signing_input + b"." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode()

    return sign


def sqlite_rotation(path: str) -> Rotate:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    connection.execute("PRAGMA synchronous=NORMAL")
    sql = (f"UPDATE {TABLE} SET current_hash = ?, generation = generation + 1, last_used_at = ? "  # noqa: S608
           f"WHERE current_hash = ? AND revoked_at IS NULL RETURNING {COLUMNS}")

    async def rotate(old: str, new: str, now: dt.datetime) -> tuple[Any, ...] | None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            row = connection.execute(sql, (new, now.strftime("%Y-%m-%d %H:%M:%S.%f"), old)).fetchone()
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return row

    return rotate


def postgres_rotation(dsn: str, pools: list[Any]) -> Rotate:
    import asyncpg

    sql = (f"UPDATE {TABLE} SET current_hash = $1, generation = generation + 1, last_used_at = $2 "  # noqa: S608
           f"WHERE current_hash = $3 AND revoked_at IS NULL RETURNING {COLUMNS}")

    async def rotate(old: str, new: str, now: dt.datetime) -> tuple[Any, ...] | None:
        if not pools:
            pools.append(await asyncpg.create_pool(dsn, min_size=1, max_size=10))
        async with pools[0].acquire() as connection:
            row = await connection.fetchrow(sql, new, now.replace(tzinfo=None), old)
        return tuple(row) if row is not None else None

    return rotate


def create_app() -> Callable[..., Awaitable[None]]:
    url, issuer = os.environ["BENCH_BARE_DATABASE_URL"], os.environ["BENCH_BARE_ISSUER"]
    key = serialization.load_pem_private_key(Path(os.environ["BENCH_BARE_KEY"]).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sign, pools = signer(key), []
    if url.startswith("sqlite"):
        rotate = sqlite_rotation(url.removeprefix("sqlite:///"))
    else:
        rotate = postgres_rotation("postgresql://" + url.split("://", 1)[1], pools)

    async def token(body: bytes) -> tuple[int, dict[str, Any]]:
        form = dict(parse_qsl(body.decode()))
        fresh = secrets.token_urlsafe(32)
        row = await rotate(_digest(form.get("refresh_token", "")), _digest(fresh), dt.datetime.now(dt.UTC))
        if row is None:
            return 400, {"error": "invalid_grant"}
        _, client_id, user_id, resource, scope = row
        now = int(time.time())
        access = sign({"iss": issuer, "sub": user_id, "aud": resource, "client_id": client_id, "scope": scope,
                       "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())})
        return 200, {"access_token": access, "token_type": "Bearer", "expires_in": 300, "refresh_token": fresh,
                     "scope": scope}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, pools)
            return
        if scope["path"] == "/readyz":
            status, content = 200, {"status": "ok"}
        else:
            status, content = await token(await _body(receive))
        body = json.dumps(content, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _body(receive: Any) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _lifespan(receive: Any, send: Any, pools: list[Any]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for pool in pools:
                await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
