"""Issue 9 load runs: the broker, the bare-minimum refresh endpoint and oidc-provider under the same load.

`broker serve`, PostgreSQL, the bare endpoint and oidc-provider run pinned to core 0; this process, the
load generator (asyncio, a raw keep-alive HTTP/1.1 client, closed loop), is pinned to core 1. Each cell
runs a warm-up, then --repeats timed runs of --duration seconds (at most --max-requests iterations);
the table gives the median rate, its spread, latency percentiles, errors, the server tree's CPU
seconds and peak RSS (largest process) from /proc, PostgreSQL's CPU, and how busy the generator was.

    python bench/load_runs.py                      # everything (about 25 minutes on 2 cores)
    python bench/load_runs.py --quick              # a smoke run of everything (a few minutes)
    python bench/load_runs.py --scenarios refresh,introspect --stores sqlite --suites broker,peer
    python bench/load_runs.py --markdown var/bench-issue9.md   # also write the report there

Suites: ceiling (the generator's own limit), head-to-head (the targets' comparisons with their runs
interleaved: the broker, oidc-provider and the bare endpoints in turns, 1 worker), broker (scenarios x
stores x workers x clients, with the bare endpoint after each broker), peer (oidc-provider), scale-out
(1-3 instances on PostgreSQL), dpop (a DPoP refresh beside a bearer refresh, in turns). The comparison
lines take head-to-head's rows when it ran.

    python bench/load_runs.py --suites head-to-head --workers 1   # the targets, in about 10 minutes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402
from bench.harness.report import error_lines, markdown, ratio  # noqa: E402
from bench.harness.runner import Plan  # noqa: E402
from bench.harness.servers import (  # noqa: E402
    GENERATOR_CPUS,
    SERVER_CPUS,
    can_pin,
    pin_generator,
    pin_tree,
    postmaster_pid,
)
from bench.harness.stats import Row  # noqa: E402
from bench.peer.target import version as oidc_provider_version  # noqa: E402
from bench.suites import broker_matrix, ceiling, dpop, head_to_head, peer, scale_out  # noqa: E402
from bench.targets.fake_idp import FakeIdp  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

SUITES = ("ceiling", "head-to-head", "broker", "peer", "scale-out", "dpop")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run: 1 repeat of 1.5 s, 16 clients")
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--scenarios", default=",".join(broker_matrix.SCENARIOS))
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--clients", default="16,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per timed run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--max-requests", type=int, default=40_000, help="iterations per run at most")
    parser.add_argument("--markdown", type=Path, help="also write the report (markdown) to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.duration, args.warmup, args.clients = 1, 1.5, 0.5, "16"
    return args


def csv(text: str, allowed: object = None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if allowed is not None and item not in allowed]
    if unknown:
        raise SystemExit(f"unknown: {', '.join(unknown)} (choose from {', '.join(allowed)})")  # type: ignore
    return items


def find(rows: list[Row], suite: str, scenario: str, store: str, workers: str, clients: int) -> Row | None:
    return next((r for r in rows if (r.suite, r.scenario, r.store, r.workers, r.clients)
                 == (suite, scenario, store, workers, clients)), None)


def comparisons(rows: list[Row], workers: list[str], clients: list[int]) -> list[str]:
    """The ratios the targets are stated in (docs and bench/RESULTS.md), from this run's rows."""
    lines = []
    for w in workers:
        for n in clients:
            def broker(scenario: str, store: str = "sqlite", w: str = w, n: int = n) -> Row | None:
                return find(rows, "broker", scenario, store, w, n)

            def peer(scenario: str, n: int = n) -> Row | None:
                return find(rows, "peer", scenario, "memory", "1", n)

            bare = {(flavour, store): find(rows, f"bare {flavour}", "refresh", store, w, n)
                    for flavour in ("raw", "fastapi") for store in ("sqlite", "postgresql")}
            lines += [
                f"- {w} worker(s), {n} clients:",
                f"  - refresh (SQLite) vs oidc-provider's refresh: {ratio(broker('refresh'), peer('refresh'))} "
                "(target >= 120 %)",
                f"  - client credentials vs oidc-provider's: "
                f"{ratio(broker('client-credentials'), peer('client-credentials'))} (target >= 120 %)",
                f"  - introspection vs oidc-provider's: {ratio(broker('introspect'), peer('introspect'))} "
                "(target >= 100 %)",
                f"  - ID-JAG vs oidc-provider's refresh: {ratio(broker('id-jag'), peer('refresh'))} (target >= 100 %)",
                f"  - refresh on PostgreSQL vs the raw bare endpoint on PostgreSQL: "
                f"{ratio(broker('refresh', 'postgresql'), bare['raw', 'postgresql'])} (target >= 75 %)",
                f"  - refresh (SQLite) vs the raw bare endpoint: {ratio(broker('refresh'), bare['raw', 'sqlite'])}; "
                f"vs the FastAPI bare endpoint: {ratio(broker('refresh'), bare['fastapi', 'sqlite'])}",
                f"  - refresh p99 vs oidc-provider's: {p99_ratio(broker('refresh'), peer('refresh'))} "
                "(target <= 1.5x at 64 clients)",
            ]
    return lines


def p99_ratio(numerator: Row | None, denominator: Row | None) -> str:
    if numerator is None or denominator is None or not denominator.median("p99_ms"):
        return "n/a"
    return (f"{numerator.median('p99_ms') / denominator.median('p99_ms'):.2f}x "
            f"({numerator.median('p99_ms'):.0f} vs {denominator.median('p99_ms'):.0f} ms)")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    suites, stores = csv(args.suites, SUITES), csv(args.stores, ("sqlite", "postgresql"))
    scenarios = csv(args.scenarios, broker_matrix.SCENARIOS)
    workers, clients = [int(w) for w in csv(args.workers)], [int(n) for n in csv(args.clients)]
    plan = Plan(args.duration, args.warmup, args.repeats, args.max_requests)
    load_before = environment.load_average()
    pin_generator()
    print(f"pinning: servers on CPU {SERVER_CPUS}, generator on CPU {GENERATOR_CPUS}" if can_pin()
          else "pinning: off (fewer than 2 CPUs)", flush=True)
    idp = FakeIdp()
    needs_pg = "postgresql" in stores and bool({"head-to-head", "broker", "scale-out", "dpop"} & set(suites))
    pg = PostgresServer().start() if needs_pg else None
    postmaster = postmaster_pid(pg.port) if pg is not None else None
    if postmaster:  # PostgreSQL shares the server core; backends forked later inherit the affinity
        pin_tree(postmaster)
    rows: list[Row] = []
    check = "not run"
    try:
        if "ceiling" in suites:
            rows += ceiling.run(plan, clients)
        if "head-to-head" in suites:
            rows += head_to_head.run(stores, pg, idp, plan, clients)
        if "broker" in suites:
            for store in stores:
                rows += broker_matrix.run(store, pg, idp, plan, scenarios, workers, clients, with_bare="refresh"
                                          in scenarios)
        if "peer" in suites:
            rows += peer.run(plan, clients, scenarios)
        if "dpop" in suites:
            rows += dpop.run(stores, pg, idp, plan, clients)
        if "scale-out" in suites and pg is not None:
            scale_rows, check = scale_out.run(pg, idp, plan, clients)
            rows += scale_rows
        pg_version = pg_server_version(pg) if pg else None
    finally:
        if pg is not None:
            pg.stop()
    report = "\n".join([
        *environment.describe(pg_version, oidc_provider_version(), load_before),
        f"- command: `{' '.join(['python bench/load_runs.py', *(argv if argv is not None else sys.argv[1:])])}`",
        f"- plan: {plan.repeats} x {plan.duration:g} s runs after a {plan.warmup:g} s warm-up, at most "
        f"{plan.max_requests} iterations per run",
        "", markdown(rows), "",
        *comparisons(rows, [str(w) for w in workers], clients),
        f"- scale-out cross-instance sign-in: {check}",
        *error_lines(rows),
    ])
    print("\n" + report, flush=True)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report + "\n")


def pg_server_version(pg: PostgresServer) -> str:
    with psycopg.connect(pg.conninfo()) as connection:
        return str(connection.execute("show server_version").fetchone()[0])


if __name__ == "__main__":
    main()
