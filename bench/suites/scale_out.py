"""Scale-out: 1, 2 and 3 `broker serve` processes (1 worker each) on one PostgreSQL, client-side round robin.

The generator spreads each virtual client's requests over the instances in turn (bench/harness/http1.py,
``RoundRobin``): no proxy, no extra hop. All instances share the server core with PostgreSQL (the
generator has the other), so the rows show what running several instances costs or gains on one
core, and that any instance serves any step; not added capacity. The check signs in with every
step on a different instance than the one before (authorize on 1, login form on 2, credentials on 3,
callback on 1, token on 2).
"""

from __future__ import annotations

import asyncio

from bench.harness.http1 import Links
from bench.harness.runner import Plan, measure
from bench.harness.stats import Row
from bench.scenarios.refresh import Refresh
from bench.targets import broker
from bench.targets.browser import sign_in
from bench.targets.fake_idp import FakeIdp
from tests.support.postgres import PostgresServer


async def cross_instance_login(target: broker.BrokerTarget) -> str:
    """One sign-in whose consecutive steps hit consecutive instances; a sentence saying how it went."""
    links = Links(target.ports)
    try:
        tokens = await sign_in(links.http(0), target.setup.clients["app"], "bench-7", target.setup.resource)
        return ("passed: a sign-in with its 5 steps spread over instances "
                f"{', '.join(str(i % len(target.ports) + 1) for i in range(5))} got tokens "
                f"({', '.join(sorted(tokens))})")
    except Exception as exc:  # the check reports any failure as its result
        return f"FAILED: {exc}"
    finally:
        await links.close()


def run(pg: PostgresServer, idp: FakeIdp, plan: Plan, clients: list[int],
        instances: tuple[int, ...] = (1, 2, 3)) -> tuple[list[Row], str]:
    setup = broker.create("postgresql", idp, pg, instances=max(instances))
    rows: list[Row] = []
    check = "not run"
    try:
        for count in instances:
            with broker.BrokerTarget(setup, 1, instances=count) as target:
                scenario = Refresh()
                rows += [measure(target, scenario, n, plan, "scale-out") for n in clients]
                if count == max(instances) and count > 1:
                    check = asyncio.run(cross_instance_login(target))
                    print(f"  cross-instance sign-in: {check}", flush=True)
    finally:
        broker.remove(setup, pg)
    return rows, check
