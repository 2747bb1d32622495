"""Admin console page times with 10,000 users and 100,000 audit events (target: < 200 ms server time).

In-process (httpx over ASGI, so the time is the broker's own), SQLite in a temp dir, a private
PostgreSQL (--store postgresql; tests/support/postgres.py) or a database URL given with --database-url;
a console session created directly for an admin. The events look like a broker's: tokens issued and
refreshed, sign-ins with their policy decisions (5 % denied, each with its failure), revocations, across
50 clients and 12 MCP servers. Prints the median and max over N requests per page.
Usage: python bench/admin_pages.py [--store sqlite|postgresql] [--users 10000] [--events 100000] [--requests 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker import config, dev  # noqa: E402
from broker.admin import sessions  # noqa: E402
from broker.app import build_state, prepare  # noqa: E402
from broker.storage.migrate import upgrade  # noqa: E402
from broker.storage.models import AuditEvent, Client, Group, GroupMembership, McpServer, User, utcnow  # noqa: E402
from broker.web import create_app  # noqa: E402
from broker.web.admin.common import cookie_name  # noqa: E402

ISSUER = "http://127.0.0.1:8000"
SERVERS = ["demo", *(f"server-{n}" for n in range(11))]
CLIENTS = [f"client-{n}" for n in range(50)]


def _event(rng: random.Random, now: dt.datetime, user_id: str, n: int) -> list[dict]:
    """One or two events as the broker writes them (a denied sign-in is a decision and a failure)."""
    at = now - dt.timedelta(seconds=rng.randrange(0, 7 * 86400))
    client, server = rng.choice(CLIENTS), rng.choice(SERVERS)
    base = {"occurred_at": at, "actor": client, "user_id": user_id, "client_id": client, "server_id": server}
    kind = rng.random()
    if kind < 0.45:
        return [{**base, "event_type": "token.refreshed", "outcome": "success", "data": {"jti": f"jti-{n}"}}]
    if kind < 0.75:
        return [{**base, "event_type": "token.issued", "outcome": "success", "data": {"jti": f"jti-{n}"}}]
    if kind < 0.95:
        return [{**base, "event_type": "authorization.decision", "outcome": "allowed",
                 "data": {"rule_ids": ["engineering-demo"], "reason": "allowed by engineering-demo"}}]
    if kind < 0.975:
        reason = {"rule_ids": [], "reason": f"no rule allows user{n} to reach {server}"}
        return [{**base, "event_type": "authorization.decision", "outcome": "denied", "data": reason},
                {**base, "event_type": "authorization.failed", "outcome": "denied",
                 "data": {"error": "access_denied", **reason}}]
    return [{**base, "event_type": "token.revoked", "outcome": "revoked", "data": {"jti": f"jti-{n}"}}]


def seed(state, n_users: int, n_events: int) -> tuple[str, str]:
    now = utcnow()
    rng = random.Random(7)
    with state.database.transaction() as session:
        session.execute(insert(McpServer), [
            {"id": s, "name": f"Server {s}", "resource": f"https://{s}.example.com/mcp", "scopes": {"read": "r"},
             "default_scopes": ["read"], "tags": ["bench"], "enabled": True, "created_at": now, "updated_at": now}
            for s in SERVERS[1:]])
        session.execute(insert(Client), [{"id": c, "name": f"Client {c}", "kind": "preregistered", "created_at": now,
                                          "updated_at": now} for c in CLIENTS])
        groups = [{"id": str(uuid.uuid4()), "source": "idp:test", "name": f"group-{g}", "created_at": now}
                  for g in range(200)]
        session.execute(insert(Group), groups)
        users = [{"id": str(uuid.uuid4()), "email": f"user{u}@example.com", "display_name": f"User {u}",
                  "status": "active", "created_at": now, "updated_at": now,
                  "last_login_at": now - dt.timedelta(minutes=rng.randrange(0, 3000))} for u in range(n_users)]
        session.execute(insert(User), users)
        session.execute(insert(GroupMembership), [{"user_id": u["id"], "group_id": rng.choice(groups)["id"],
                                                   "created_at": now} for u in users])
        written = 0
        while written < n_events:
            batch = []
            while len(batch) < 10_000 and written + len(batch) < n_events:
                batch += _event(rng, now, rng.choice(users)["id"], written + len(batch))
            session.execute(insert(AuditEvent), batch)
            written += len(batch)
        admin = users[0]
        cookie = sessions.start(session, session.get(User, admin["id"]), "test", ["admin"], state.settings.admin,
                                utcnow())
    return cookie, users[len(users) // 2]["id"]


def pages(user_id: str) -> list[str]:
    day = (utcnow() - dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    next_day = (utcnow() - dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    return ["/admin", "/admin/users", "/admin/users?q=user42", f"/admin/users/{user_id}", "/admin/audit",
            "/admin/audit?type=token.revoked", f"/admin/audit?user={user_id}", "/admin/audit?user=user42%40example.com",
            "/admin/audit?user=User%204242", "/admin/audit?client=Client%20client-7", "/admin/audit?server=server-3",
            "/admin/audit?outcome=denied", "/admin/audit/denials", "/admin/audit?q=jti-99990",
            f"/admin/audit?since={quote(day)}&until={quote(next_day)}", "/admin/audit?server=demo&outcome=denied",
            "/admin/access", "/admin/access?user=user42", "/admin/servers", "/admin/clients", "/admin/policies",
            "/admin/keys"]


async def time_pages(app, cookie_header: dict[str, str], user_id: str, requests: int) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER,
                                 cookies=cookie_header) as http:
        print(f"{'page':52} {'median ms':>10} {'max ms':>8}")
        for page in pages(user_id):
            times = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await http.get(page)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (page, response.status_code, response.text[:200])
            print(f"{page[:52]:52} {statistics.median(times):10.1f} {max(times):8.1f}")


def run(database_url: str | None, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        database = {"url": database_url} if database_url else {}
        settings = config.load(None, env={}, defaults={
            "mode": "dev", "issuer": ISSUER, "data_dir": directory, "database": database,
            "logging": {"level": "WARNING", "format": "text"}, "keys": {"key_encryption_key": config.new_kek()}})
        state = build_state(settings)
        upgrade(state.database)
        prepare(state)
        with state.database.transaction() as session:
            dev.seed(session, ISSUER)
            dev.seed_policy(session)
        started = time.perf_counter()
        cookie, user_id = seed(state, args.users, args.events)
        if state.database.dialect == "postgresql":
            with state.database.engine.connect() as connection:  # what autovacuum does after a bulk load
                connection.execute(text("ANALYZE"))
                connection.commit()
        print(f"seeded {args.users} users and {args.events} audit events in {time.perf_counter() - started:.1f} s "
              f"({state.database.dialect})")
        asyncio.run(time_pages(create_app(state), {cookie_name(state): cookie}, user_id, args.requests))
        state.database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--database-url", help="an empty database (instead of --store)")
    args = parser.parse_args()
    if args.database_url or args.store == "sqlite":
        run(args.database_url, args)
        return
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        run(server.create_database("admin_pages"), args)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
