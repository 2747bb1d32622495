"""What the database keeps per sign-in and per refresh, on PostgreSQL: the bytes behind the sizing in
docs/operations.md.

A broker set up as for the load runs (bench/targets/broker.py: `broker serve`, the test IdP) signs in
``--sign-ins`` times and then rotates those families ``--refreshes`` times in all, over HTTP. Then
PostgreSQL's own accounting (``pg_total_relation_size``: table, indexes and TOAST) is read for the tables
that grow, before ``VACUUM`` and after it. Prints bytes per row and per request.

    python bench/storage_footprint.py [--sign-ins 64] [--refreshes 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness.http1 import Links  # noqa: E402
from bench.harness.runner import Plan, measure  # noqa: E402
from bench.scenarios.refresh import Refresh  # noqa: E402
from bench.targets import broker  # noqa: E402
from bench.targets.fake_idp import FakeIdp  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

TABLES = ("audit_events", "refresh_token_families", "rotated_refresh_tokens", "users", "upstream_identities",
          "pending_authorizations", "consents")


def sizes(dsn: str) -> dict[str, tuple[int, int]]:
    """Rows and total bytes (indexes and TOAST included) of each table that exists."""
    out: dict[str, tuple[int, int]] = {}
    with psycopg.connect(dsn, autocommit=True) as connection:
        for table in TABLES:
            if connection.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is None:
                continue
            rows = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 (fixed names)
            size = connection.execute("SELECT pg_total_relation_size(%s)", [table]).fetchone()[0]
            out[table] = (rows, size)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sign-ins", type=int, default=64)
    parser.add_argument("--refreshes", type=int, default=10_000)
    args = parser.parse_args()
    pg, idp = PostgresServer().start(), FakeIdp()
    try:
        setup = broker.create("postgresql", idp, pg)
        try:
            with broker.BrokerTarget(setup, 1) as target:
                asyncio.run(target.sign_ins(Links(target.ports), args.sign_ins - 1))  # one signed in at start
                signed_in = sizes(setup.database_url.replace("+psycopg", ""))
                measure(target, Refresh(), args.sign_ins, Plan(60.0, 0.2, 1, args.refreshes), "broker")
            report(signed_in, sizes(setup.database_url.replace("+psycopg", "")), args.sign_ins)
        finally:
            broker.remove(setup, pg)
    finally:
        pg.stop()


def report(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], sign_ins: int) -> None:
    print(f"\nafter {sign_ins} sign-ins:")
    for table, (rows, size) in before.items():
        print(f"  {table:24} {rows:8} rows {size / 1024:9.0f} KiB")
    refreshes = after["rotated_refresh_tokens"][0] - before.get("rotated_refresh_tokens", (0, 0))[0]
    print(f"\nafter {refreshes} refreshes more (rotations recorded):")
    for table, (rows, size) in after.items():
        added_rows, added = rows - before.get(table, (0, 0))[0], size - before.get(table, (0, 0))[1]
        per_row = f"{added / added_rows:7.0f} B/row" if added_rows > 0 else ""
        per_refresh = f"{added / refreshes:7.0f} B/refresh" if refreshes else ""
        print(f"  {table:24} {rows:8} rows {size / 1024:9.0f} KiB  +{added_rows} rows {per_row} {per_refresh}")


if __name__ == "__main__":
    main()
