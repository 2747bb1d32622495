"""Soak (issue 10): `broker serve --workers 2` under a steady mixed load for --minutes; memory, errors, p99.

The load is open-loop: each kind of request has its own fixed schedule (requests per second from
``MIX``, scaled so the whole adds up to --rate), and a request's latency runs from its scheduled start,
so a server falling behind shows as growing latency rather than as a lower rate. Kinds: refresh-token
rotation, introspection, ID-JAG (jwt-bearer) grants, JWKS, discovery, and full sign-ins (5 requests
through the test IdP). Every minute the script prints one row: iterations, errors, latency percentiles
of the single requests and of the sign-ins, the resident memory of each server process (the serve
supervisor and its two workers, from /proc), the CPU of the server and of PostgreSQL, and the CPU the
rest of the machine used (on both cores, and on the server core alone: the share that competes).

Verdict (exit 1 when it fails):

- memory flat: for every server process, the last minute's RSS is within 10 % of its RSS at the end of
  the first (warm-up) minute;
- no errors: every iteration answered what it should (and no server process exited);
- p99 stable: over the minutes after the warm-up, the p99 of single requests never exceeds twice the
  median of those minutes' p99s, and the second half's median p99 is at most 1.5 times the first
  half's (no upward drift).

Like the load runs, the servers (broker workers, PostgreSQL) are pinned to core 0 and this generator to
core 1. The default rate, 80 iterations/s, is about 40 % of what the mix sustains by the issue 9 table
(bench/RESULTS.md, PostgreSQL, 2 workers, 16 clients; ``capacity`` is the arithmetic): 120/s (60 %)
fell behind within a minute while other work used 1.3 cores of the shared machine.

    python bench/soak.py                       # 10 minutes, PostgreSQL (`make soak`)
    python bench/soak.py --minutes 3 --store sqlite --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import environment  # noqa: E402
from bench.harness.http1 import HttpError, Links  # noqa: E402
from bench.harness.load import Exhausted, Failed  # noqa: E402
from bench.harness.procstat import TICKS, cpu_seconds, machine_busy_seconds, rss_mib, tree  # noqa: E402
from bench.harness.servers import GENERATOR_CPUS, SERVER_CPUS, can_pin, pin_generator, pin_tree  # noqa: E402
from bench.harness.stats import percentile  # noqa: E402
from bench.scenarios import id_jag, introspection, login, metadata, refresh  # noqa: E402
from bench.targets import broker  # noqa: E402
from bench.targets.fake_idp import FakeIdp  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

# Share of iterations, and each kind's sustained rate in the issue 9 table (PostgreSQL, 2 workers, 16 clients).
MIX = {"refresh": (0.40, 254.5), "introspect": (0.30, 236.9), "id-jag": (0.10, 162.3), "jwks": (0.08, 950.7),
       "discovery": (0.08, 627.7), "full-login": (0.04, 32.2)}
SINGLE = ("refresh", "introspect", "id-jag", "jwks", "discovery")
WORKERS = 2
CONNECTIONS = 8  # per kind: enough in flight to keep the schedule when a few requests are slow
MAX_MINUTES = 50  # the introspected access tokens live 1 h (bench setup), minted at the start
# ~40 % of what the mix sustains on a quiet machine (``capacity``): the development machine is shared,
# and other work on the server core (1-1.5 cores' worth in the first trial) halves what is left for it.
RATE = 80.0
RSS_GROWTH = 0.10
P99_SPIKE, P99_DRIFT = 2.0, 1.5


def capacity() -> float:
    """Iterations/s the mix sustains when each kind costs 1/rate of the server: 1 / sum(share / rate)."""
    return 1 / sum(share / rate for share, rate in MIX.values())


@dataclass
class Minute:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    server_cpu_s: float = 0.0
    db_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # the rest of the machine, both cores
    other_core_s: float = 0.0  # the rest of the machine on the server core (the one that competes)

    @property
    def ok(self) -> int:
        return sum(len(v) for v in self.latencies.values()) - self.error_count

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def p(self, q: float, kinds: tuple[str, ...]) -> float:
        values = sorted(x for k in kinds for x in self.latencies.get(k, []))
        return percentile(values, q) * 1000


class Soak:
    """The schedules, the virtual clients behind them, and the per-minute record."""

    def __init__(self, target: broker.BrokerTarget, rate: float, minutes: int, trace: Path | None = None) -> None:
        self.target, self.rate, self.minutes, self.trace = target, rate, minutes, trace
        self.iterations: list[tuple[str, float, float, bool]] = []  # --trace: kind, due (s), latency (s), ok
        self.seconds: list[tuple[float, ...]] = []  # --trace: time (s), then cpu_readings()
        self.links = Links(target.ports)
        self.record: list[Minute] = [Minute()]
        self.samples: dict[str, int] = {}
        self.assertions: list[str] = []

    @property
    def now_minute(self) -> Minute:
        return self.record[-1]

    async def clients(self) -> dict[str, list[Callable[[], Awaitable[bool]]]]:
        target, n = self.target, CONNECTIONS
        made = {
            "refresh": await refresh.Refresh().clients(target, self.links, n, 0),
            "introspect": await introspection.Introspection().clients(target, self.links, n, 0),
            "jwks": await metadata.jwks().clients(target, self.links, n, 0),
            "discovery": await metadata.discovery().clients(target, self.links, n, 0),
            "full-login": await login.Login().clients(target, self.links, n, 0),
        }
        agent, setup = target.setup.clients["agent"], target.setup
        made["id-jag"] = [id_jag.IdJagClient(self.links.http(i), agent.auth, self._assertions(setup, agent.client_id))
                          for i in range(n)]
        return made

    def _assertions(self, setup: broker.BrokerSetup, client_id: str):
        """ID-JAGs signed a minute's worth at a time (each lives 10 minutes), shared by the id-jag clients."""
        per_batch = int(self.rate * MIX["id-jag"][0] * 60) + 50
        while True:
            if not self.assertions:
                self.assertions = setup.idp.assertions(per_batch, setup.issuer, client_id, setup.resource)
            yield self.assertions.pop()

    async def run(self) -> None:
        clients = await self.clients()
        started = time.perf_counter()
        deadline = started + self.minutes * 60
        schedules = [self._schedule(kind, clients[kind], self.rate * share, started, deadline)
                     for kind, (share, _) in MIX.items()]
        tracing = [self._seconds(started, deadline)] if self.trace else []
        await asyncio.gather(self._minutes(started), *schedules, *tracing)
        await self.links.close()
        if self.trace:
            self.write_trace(self.trace, started)

    def write_trace(self, path: Path, started: float) -> None:
        path.write_text("kind,due_s,latency_ms,ok\n" + "".join(
            f"{k},{d - started:.3f},{lat * 1000:.1f},{int(ok)}\n" for k, d, lat, ok in self.iterations))
        path.with_suffix(".cpu.csv").write_text("t_s,server_cpu_s,db_cpu_s,busy_s,core_busy_s,own_s\n" + "".join(
            ",".join(f"{v:.3f}" for v in (t - started, *readings)) + "\n" for t, *readings in self.seconds))

    async def _seconds(self, started: float, deadline: float) -> None:
        """--trace: the CPU readings once a second, to line latency up with who had the CPU."""
        pids = self.process_names()
        while time.perf_counter() < deadline:
            self.seconds.append((time.perf_counter(), *self.cpu_readings(pids)))
            await asyncio.sleep(1.0)

    async def _schedule(self, kind: str, clients: list, rate: float, started: float, deadline: float) -> None:
        """Start one iteration every 1/rate s from a free client; latency counts from the scheduled time."""
        free: asyncio.Queue = asyncio.Queue()
        for client in clients:
            free.put_nowait(client)
        pending: set[asyncio.Task] = set()
        due = started
        while due < deadline:
            due += 1 / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            client = await free.get()  # waiting here delays the start, and the latency shows it
            task = asyncio.ensure_future(self._one(kind, client, due, free))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=30)

    async def _one(self, kind: str, client, due: float, free: asyncio.Queue) -> None:
        try:
            ok = await client()
        except Exhausted:  # a refresh family that failed once stays failed
            ok = False
            self.sample(f"{kind}: its family failed before")
        except (Failed, HttpError, OSError, ValueError, KeyError) as exc:
            ok = False
            self.sample(f"{kind}: " + (str(exc) if isinstance(exc, Failed | HttpError) else repr(exc)))
        minute = self.now_minute
        minute.latencies.setdefault(kind, []).append(time.perf_counter() - due)
        if self.trace:
            self.iterations.append((kind, due, time.perf_counter() - due, ok))
        if not ok:
            minute.errors[kind] = minute.errors.get(kind, 0) + 1
        free.put_nowait(client)

    def sample(self, what: str) -> None:
        self.samples[what[:200]] = self.samples.get(what[:200], 0) + 1

    async def _minutes(self, started: float) -> None:
        pids = self.process_names()
        before = self.cpu_readings(pids)
        for number in range(1, self.minutes + 1):
            await asyncio.sleep(max(0.0, started + number * 60 - time.perf_counter()))
            minute = self.now_minute
            minute.rss = {name: rss_mib(pid) or 0.0 for pid, name in pids.items()}
            now = self.cpu_readings(pids)
            server, db, busy, core, own = (b - a for a, b in zip(before, now, strict=True))
            minute.server_cpu_s, minute.db_cpu_s = server, db
            minute.other_cpu_s = max(0.0, busy - server - db - own)
            minute.other_core_s = max(0.0, core - server - db) if can_pin() else minute.other_cpu_s
            before = now
            print(row_line(number, minute), flush=True)
            if number < self.minutes:
                self.record.append(Minute())

    def process_names(self) -> dict[int, str]:
        """The serve process, its workers and multiprocessing's resource tracker; PostgreSQL is not one of them."""
        names, workers = {}, 0
        for root in self.target.server_pids():
            for pid in sorted(tree([root])):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if pid == root:
                    names[pid] = "serve"
                elif b"resource_tracker" in cmdline:
                    names[pid] = "tracker"
                else:
                    workers += 1
                    names[pid] = f"worker {workers}"
        return names

    def cpu_readings(self, pids: dict[int, str]) -> tuple[float, float, float, float, float]:
        """CPU seconds so far: server processes, PostgreSQL's tree, all cores busy, the server core busy,
        this generator."""
        db = self.target.db_pids()
        return (sum(cpu_seconds(pid) or 0.0 for pid in pids), sum(cpu_seconds(pid) or 0.0 for pid in tree(db)),
                machine_busy_seconds(), core_busy_seconds(int(SERVER_CPUS.split(",")[0])), time.process_time())


def core_busy_seconds(core: int) -> float:
    """CPU seconds one core spent busy since boot (its /proc/stat line: everything but idle and iowait)."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{core} "):
                fields = [int(v) for v in line.split()[1:]]
                return (sum(fields[:8]) - fields[3] - fields[4]) / TICKS
    return 0.0


def header(names: list[str]) -> str:
    rss = " | ".join(f"RSS {n} MiB" for n in names)
    return (f"| min | ok | errors | ok/s | single p50 ms | single p95 ms | single p99 ms | refresh p99 ms | "
            f"sign-in p50 ms | sign-in p99 ms | {rss} | server CPU s | db CPU s | other CPU s | "
            f"of which on the server core |\n" + "|---" * (14 + len(names)) + "|")


def row_line(number: int, m: Minute) -> str:
    rss = " | ".join(f"{v:.1f}" for v in m.rss.values())
    return (f"| {number} | {m.ok} | {m.error_count} | {m.ok / 60:.1f} | {m.p(50, SINGLE):.1f} | "
            f"{m.p(95, SINGLE):.1f} | {m.p(99, SINGLE):.1f} | {m.p(99, ('refresh',)):.1f} | "
            f"{m.p(50, ('full-login',)):.0f} | {m.p(99, ('full-login',)):.0f} | {rss} | {m.server_cpu_s:.1f} | "
            f"{m.db_cpu_s:.1f} | {m.other_cpu_s:.1f} | {m.other_core_s:.1f} |")


def verdict(record: list[Minute], lost: list[str]) -> list[str]:
    """The failed checks (empty: the soak passed), each with its numbers."""
    failures = []
    first, last = record[0], record[-1]
    for name, start in first.rss.items():
        end = last.rss.get(name, 0.0)
        if end > start * (1 + RSS_GROWTH):
            failures.append(f"memory: {name} grew from {start:.1f} to {end:.1f} MiB "
                            f"(+{(end / start - 1) * 100:.0f} %, allowed {RSS_GROWTH * 100:.0f} %)")
    errors = sum(m.error_count for m in record)
    if errors or lost:
        failures.append(f"errors: {errors} failed iterations" + (f"; {', '.join(lost)}" if lost else ""))
    p99 = [m.p(99, SINGLE) for m in record[1:]]
    if len(p99) >= 2:
        typical = statistics.median(p99)
        spikes = [f"minute {i + 2}: {v:.0f} ms" for i, v in enumerate(p99) if v > P99_SPIKE * typical]
        if spikes:
            failures.append(f"p99: above {P99_SPIKE:g}x the median minute ({typical:.0f} ms) in " + ", ".join(spikes))
        half = len(p99) // 2
        early, late = statistics.median(p99[:half]), statistics.median(p99[half:])
        if late > P99_DRIFT * early:
            failures.append(f"p99: drifted up from {early:.0f} ms (first half, median) to {late:.0f} ms (second half)")
    return failures


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help=f"1 to {MAX_MINUTES} (default 10)")
    parser.add_argument("--rate", type=float, default=RATE, help=f"iterations/s of the whole mix (default {RATE:g})")
    parser.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--trace", type=Path, help="write every iteration to this CSV (and CPU per second to "
                                                   "*.cpu.csv), to look into a latency spike")
    args = parser.parse_args(argv)
    if not 1 <= args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be between 1 and {MAX_MINUTES}")
    if not 0 < args.rate <= 2000:
        parser.error("--rate must be above 0 and at most 2000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    pin_generator()
    pg = PostgresServer().start() if args.store == "postgresql" else None
    idp = FakeIdp()
    setup = broker.create(args.store, idp, pg)
    if pg is not None and setup.db_root:
        pin_tree(setup.db_root)
    print("\n".join(environment.describe(None, "not used", environment.load_average())[:2]), flush=True)
    print(f"- pinning: servers on CPU {SERVER_CPUS}, generator on CPU {GENERATOR_CPUS}" if can_pin()
          else "- pinning: off (fewer than 2 CPUs)")
    print(f"- command: python bench/soak.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"- load: {args.rate:g} iterations/s, open loop, for {args.minutes} min on {args.store}, "
          f"{WORKERS} workers; the mix sustains ~{capacity():.0f}/s by the issue 9 table, so "
          f"{args.rate / capacity() * 100:.0f} % of it: "
          + ", ".join(f"{kind} {args.rate * share:.1f}/s" for kind, (share, _) in MIX.items()), flush=True)
    try:
        with broker.BrokerTarget(setup, WORKERS) as target:
            soak = Soak(target, args.rate, args.minutes, args.trace)
            before = set(soak.process_names())
            names = soak.process_names()
            print("- processes: " + ", ".join(f"{name} = pid {pid}" for pid, name in names.items()), flush=True)
            print(header(list(names.values())), flush=True)
            asyncio.run(soak.run())
            gone = before - set(soak.process_names())
            lost = [f"server process {pid} exited" for pid in sorted(gone)]
    finally:
        broker.remove(setup, pg)
        if pg is not None:
            pg.stop()
    for what, count in sorted(soak.samples.items(), key=lambda item: -item[1])[:10]:
        print(f"- error x{count}: {what}")
    failures = verdict(soak.record, lost)
    print("verdict: " + ("PASS (memory flat, no errors, p99 stable)" if not failures
                         else "FAIL\n" + "\n".join(f"- {f}" for f in failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
