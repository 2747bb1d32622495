"""Admin console page times with 10,000 users and 100,000 audit events (issue 7: < 200 ms server time).

In-process (httpx over ASGI, so the time is the broker's own), SQLite in a temp dir (or a database
URL given with --database-url), a console session created directly for an admin. Prints the median and
max over N requests per page.
Usage: python bench/admin_pages.py [--users 10000] [--events 100000] [--requests 10]
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

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker import config, dev  # noqa: E402
from broker.admin import sessions  # noqa: E402
from broker.app import build_state, prepare  # noqa: E402
from broker.storage.migrate import upgrade  # noqa: E402
from broker.storage.models import AuditEvent, Group, GroupMembership, User, utcnow  # noqa: E402
from broker.web import create_app  # noqa: E402
from broker.web.admin.common import cookie_name  # noqa: E402

ISSUER = "http://127.0.0.1:8000"
EVENT_TYPES = ["token.issued", "token.refreshed", "authorization.decision", "login.success", "token.revoked"]


def seed(state, n_users: int, n_events: int) -> tuple[str, str]:
    now = utcnow()
    rng = random.Random(7)
    with state.database.transaction() as session:
        groups = [{"id": str(uuid.uuid4()), "source": "idp:test", "name": f"group-{g}", "created_at": now}
                  for g in range(200)]
        session.execute(insert(Group), groups)
        users = [{"id": str(uuid.uuid4()), "email": f"user{u}@example.com", "display_name": f"User {u}",
                  "status": "active", "created_at": now, "updated_at": now,
                  "last_login_at": now - dt.timedelta(minutes=rng.randrange(0, 3000))} for u in range(n_users)]
        session.execute(insert(User), users)
        session.execute(insert(GroupMembership), [{"user_id": u["id"], "group_id": rng.choice(groups)["id"],
                                                   "created_at": now} for u in users])
        for start in range(0, n_events, 10_000):
            session.execute(insert(AuditEvent), [
                {"occurred_at": now - dt.timedelta(seconds=rng.randrange(0, 7 * 86400)),
                 "event_type": rng.choice(EVENT_TYPES), "actor": "client-1", "user_id": rng.choice(users)["id"],
                 "client_id": "client-1", "server_id": "demo", "outcome": "success", "data": {"jti": str(i)}}
                for i in range(start, min(start + 10_000, n_events))])
        admin = users[0]
        cookie = sessions.start(session, session.get(User, admin["id"]), "test", ["admin"], state.settings.admin,
                                utcnow())
    return cookie, users[len(users) // 2]["id"]


async def time_pages(app, cookie_header: dict[str, str], user_id: str, requests: int) -> None:
    pages = ["/admin", "/admin/users", "/admin/users?q=user42", f"/admin/users/{user_id}", "/admin/audit",
             "/admin/audit?event_type=token.revoked", f"/admin/audit?user={user_id}", "/admin/servers",
             "/admin/clients", "/admin/policies", "/admin/keys"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER,
                                 cookies=cookie_header) as http:
        print(f"{'page':45} {'median ms':>10} {'max ms':>8}")
        for page in pages:
            times = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await http.get(page)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (page, response.status_code, response.text[:200])
            print(f"{page[:45]:45} {statistics.median(times):10.1f} {max(times):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        database = {"url": args.database_url} if args.database_url else {}
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
        print(f"seeded {args.users} users and {args.events} audit events in {time.perf_counter() - started:.1f} s "
              f"({state.database.dialect})")
        asyncio.run(time_pages(create_app(state), {cookie_name(state): cookie}, user_id, args.requests))


if __name__ == "__main__":
    main()
