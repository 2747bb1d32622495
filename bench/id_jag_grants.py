"""ID-JAG (jwt-bearer) grants per second against a real `broker serve`, on SQLite and on PostgreSQL.

A fake enterprise IdP (this process) publishes its JWKS over loopback HTTP and signs one ID-JAG per
request in advance (unique jti, 100 users), so the broker does the whole grant each time: parse,
ES256 verify, jti insert, user lookup, policy, access-token signature, audit event. Runs on the issue 9
harness (bench/harness/): the broker pinned to core 0, this process (the load generator, a raw
HTTP/1.1 client, C concurrent clients, bounded request count) to core 1. PostgreSQL is started from
the machine's packages (tests/support/postgres.py). `bench/load_runs.py --scenarios id-jag` runs the
same scenario in the full matrix.

Prints requests/s, p50/p95/p99 latency, errors, server CPU and RSS per round and store. Usage:
    python bench/id_jag_grants.py [--requests N] [--concurrency C] [--rounds R] [--workers W]
                                  [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness.report import markdown  # noqa: E402
from bench.harness.runner import Plan, measure  # noqa: E402
from bench.harness.servers import pin_generator  # noqa: E402
from bench.scenarios.id_jag import IdJag  # noqa: E402
from bench.targets import broker  # noqa: E402
from bench.targets.fake_idp import FakeIdp  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="grants per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--stores", default="sqlite,postgresql")
    args = parser.parse_args()
    pin_generator()
    idp = FakeIdp()
    stores = args.stores.split(",")
    # bounded by the request count (the time bound is a safety net); warm-up: first sight of the users, JWKS
    plan = Plan(duration=120.0, warmup=1.0, repeats=args.rounds, max_requests=args.requests)
    pg = PostgresServer().start() if "postgresql" in stores else None
    rows = []
    try:
        for store in stores:
            setup = broker.create(store, idp, pg)
            try:
                with broker.BrokerTarget(setup, args.workers) as target:
                    rows.append(measure(target, IdJag(), args.concurrency, plan, "broker"))
            finally:
                broker.remove(setup, pg)
    finally:
        if pg is not None:
            pg.stop()
    print(markdown(rows))


if __name__ == "__main__":
    main()
