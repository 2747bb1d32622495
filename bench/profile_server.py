"""Where a served request spends its time: py-spy samples a `broker serve` worker under one scenario.

Starts the same broker as the load runs (bench/targets/broker.py, one worker, SQLite or PostgreSQL),
drives one scenario for ``--seconds`` while ``py-spy record`` samples every thread of the worker
(threads waiting for work left out), then prints the functions with the most samples, inclusive and
exclusive, plus the rate. Not part of ``make bench``; run it by hand when looking for the next
bottleneck:

    .venv/bin/python bench/profile_server.py --scenario refresh --store sqlite --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness.http1 import Links  # noqa: E402
from bench.harness.load import drive  # noqa: E402
from bench.harness.procstat import tree  # noqa: E402
from bench.harness.servers import pin_generator  # noqa: E402
from bench.suites.broker_matrix import SCENARIOS  # noqa: E402
from bench.targets import broker  # noqa: E402
from bench.targets.fake_idp import FakeIdp  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="refresh", choices=sorted(SCENARIOS))
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=45, help="functions to list")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks in this file")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL: where the "
                        "worker's CPU goes, without threads that wait for a lock or the GIL")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    pin_generator()
    idp = FakeIdp()
    pg = PostgresServer().start() if args.store == "postgresql" else None
    setup = broker.create(args.store, idp, pg)
    try:
        with broker.BrokerTarget(setup, 1) as target:
            worker = max(tree(target.server_pids()))  # uvicorn's one worker is the newest process
            scenario = SCENARIOS[args.scenario]()
            warm = asyncio.run(_load(target, scenario, args.clients, 1.0, 2000))  # warm-up
            # A scenario that uses things up (codes, assertions) gets what the sampled seconds need, not more.
            budget = int(warm.rate * (args.seconds + 1) * 1.5) + 200 if scenario.consumes else 10**6
            raw = args.raw or Path(tempfile.mkstemp(suffix=".txt")[1])
            py_spy = str(Path(sys.executable).parent / "py-spy")  # in the venv (the test extra)
            command = [py_spy, "record", "--pid", str(worker), "--format", "raw", "--rate", "250",
                       "--output", str(raw), "--duration", str(int(args.seconds) + 1), *(["--gil"] if args.gil else [])]
            spies: list[subprocess.Popen[bytes]] = []

            def start_sampling() -> None:
                spies.append(subprocess.Popen(command,  # noqa: S603 - py-spy from the venv, on our own worker
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                time.sleep(0.5)

            result = asyncio.run(_load(target, scenario, args.clients, args.seconds, budget, start_sampling))
            spy = spies[0]
            spy.wait(timeout=60)
            print(f"{args.scenario} on {args.store}, {args.clients} clients: {result.rate:,.1f} ok/s, "
                  f"{result.errors} errors")
            report(raw.read_text(), args.top)
    finally:
        broker.remove(setup, pg)
        if pg is not None:
            pg.stop()


async def _load(target, scenario, n: int, seconds: float, budget: int, ready=None):  # noqa: ANN001, ANN202
    links = Links(target.ports)
    try:
        clients = await scenario.clients(target, links, n, budget)  # assertions and codes are made here
        if ready is not None:
            ready()  # sampling starts only now, so it sees the load and not the preparation
        return await drive(clients, seconds, budget)
    finally:
        await links.close()


def report(collapsed: str, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        if frames[-1] in IDLE:  # a worker thread waiting for work, not CPU
            continue
        total += n
        exclusive[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"{total} samples (waiting threads left out)")
    for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
        print(f"\n-- {title}")
        for frame, n in counter.most_common(top):
            print(f"{100 * n / total:6.1f} %  {frame}")


IDLE = {"Condition.wait (threading.py)", "Queue.get (queue.py)", "Event.wait (threading.py)"}


def _short(frame: str) -> str:
    """``fn (path/to/file.py:12)`` -> ``fn (file.py)``: one entry per function, whatever the line."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    tail = "/".join(parts[-2:]) if parts else path
    return f"{name} ({tail})"


if __name__ == "__main__":
    main()
