"""Policy decision latency at enterprise size (target: p99 <= 50 us with 10,000 rules, 1,000 groups).

Builds a synthetic but realistic policy: ~200 MCP servers with tags, 1,000 groups, 100,000 users with
departments and employee types, and 10,000 rules (mostly group -> server grants; some tag, claim, user,
IdP and everyone rules; some with MFA, client or validity-window conditions; ~5 % denies). Writes it as a
policy file and parses it back (as ``broker policy import`` would), compiles it, then times single
decisions for random users: half ask for a server one of their groups is granted, half for any server.

    .venv/bin/python bench/policy_decisions.py [--decisions 200000] [--seed 7] [--pin]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import os
import random
import resource
import statistics
import time
import tracemalloc
from dataclasses import dataclass

from broker.policy import (
    ALL,
    AccessRequest,
    ClaimMatch,
    Conditions,
    PolicyDocument,
    Rule,
    ServerInfo,
    Subject,
    Subjects,
    Target,
    Targets,
    compile,
    dump_policy,
    parse_policy,
)

SCOPE_POOL = ["tools:read", "tools:call", "files:read", "files:write", "tickets:read", "tickets:write",
              "repo:read", "repo:write", "admin"]
TAGS = [f"team-{n}" for n in range(12)] + ["prod", "staging", "pii", "finance", "internal", "beta", "vendor", "sox"]
DEPARTMENTS = [f"dept-{n}" for n in range(30)]
IDPS = ["okta", "entra", "google"]
CLIENTS = ["claude", "chatgpt", "codex", "vscode", "cursor"]
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


@dataclass
class World:
    targets: list[Target]
    groups: list[str]
    users: list[Subject]
    document: PolicyDocument


def make_servers(rng: random.Random, count: int) -> list[Target]:
    servers = []
    for n in range(count):
        scopes = rng.sample(SCOPE_POOL, rng.randint(2, 6))
        servers.append(Target(id=f"srv-{n:03d}", scopes=frozenset(scopes), default_scopes=frozenset(scopes[:1]),
                              tags=frozenset(rng.sample(TAGS, rng.randint(1, 3)))))
    return servers


def make_users(rng: random.Random, count: int, groups: list[str]) -> list[Subject]:
    weights = itertools.accumulate(1 / (rank + 1) ** 0.6 for rank in range(len(groups)))  # some groups much larger
    cumulative = list(weights)
    users = []
    for n in range(count):
        mine = frozenset(rng.choices(groups, cum_weights=cumulative, k=rng.randint(3, 12)))
        claims = {"department": rng.choice(DEPARTMENTS), "employee_type": "contractor" if rng.random() < 0.1
                  else "employee", "groups": sorted(mine), "sub": f"00u{n:07d}"}
        amr = ("pwd", "mfa") if rng.random() < 0.7 else ("pwd",)
        users.append(Subject(kind="user", id=f"user-{n:06d}", email=f"user{n}@example.com", idp_id=rng.choice(IDPS),
                             groups=mine, claims=claims, acr=None, amr=amr))
    return users


def make_rule(rng: random.Random, n: int, world: World) -> Rule:
    kind = rng.random()
    deny = rng.random() < 0.05
    subjects = (Subjects(groups=rng.sample(world.groups, rng.randint(1, 2))) if kind < 0.80 else
                Subjects(claims=(ClaimMatch("department", rng.choice(DEPARTMENTS)),)) if kind < 0.88 else
                Subjects(users=[u.email or u.id for u in rng.sample(world.users, rng.randint(1, 5))]) if kind < 0.96
                else Subjects(idps=[rng.choice(IDPS)]) if kind < 0.99 else Subjects(everyone=True))
    if rng.random() < 0.9:
        servers = rng.sample(world.targets, rng.randint(1, 3))
        targets = Targets(servers=[s.id for s in servers])
        offered = sorted(set().union(*(s.scopes for s in servers)))
    else:
        targets = Targets(tags=[rng.choice(TAGS)])
        offered = []
    scopes = ALL if not offered or rng.random() < 0.3 else rng.sample(offered, rng.randint(1, len(offered)))
    return Rule(id=f"rule-{n:05d}", effect="deny" if deny else "allow", subjects=subjects, targets=targets,
                scopes=scopes, description=f"synthetic rule {n}", conditions=make_conditions(rng))


def make_conditions(rng: random.Random) -> Conditions:
    roll = rng.random()
    if roll < 0.05:
        return Conditions(amr=["mfa"])
    if roll < 0.08:
        return Conditions(clients=rng.sample(CLIENTS, 2))
    if roll < 0.10:
        return Conditions(not_before=NOW - dt.timedelta(days=rng.randint(-30, 30)),
                          not_after=NOW + dt.timedelta(days=rng.randint(31, 365)))
    return Conditions()


def build_world(rng: random.Random, args: argparse.Namespace) -> World:
    world = World(make_servers(rng, args.servers), [f"grp-{n:04d}" for n in range(args.groups)], [],
                  PolicyDocument())
    world.users = make_users(rng, args.users, world.groups)
    world.document = PolicyDocument(tuple(make_rule(rng, n, world) for n in range(args.rules)))
    return world


def make_requests(rng: random.Random, world: World, count: int) -> list[AccessRequest]:
    """Half ask for a server one of the user's groups is granted (when there is one), half for any server."""
    by_id = {t.id: t for t in world.targets}
    granted: dict[str, list[str]] = {}
    for rule in world.document.rules:
        if rule.effect == "allow":
            for group in rule.subjects.groups:
                granted.setdefault(group, []).extend(rule.targets.servers)
    requests = []
    for _ in range(count):
        user = rng.choice(world.users)
        target = rng.choice(world.targets)
        if rng.random() < 0.5:
            named = [server for group in user.groups for server in granted.get(group, ())]
            target = by_id[rng.choice(named)] if named else target
        requested = None if rng.random() < 0.5 else frozenset(rng.sample(sorted(target.scopes), 1))
        requests.append(AccessRequest(user, rng.choice(CLIENTS), target, requested, NOW))
    return requests


def timed(label: str, work):
    start = time.perf_counter()
    result = work()
    print(f"{label:<34} {time.perf_counter() - start:8.3f} s")
    return result


def measure(policy, requests: list[AccessRequest]) -> tuple[list[float], float, int]:
    decide, clock = policy.decide, time.perf_counter_ns
    latencies, allowed = [], 0
    for request in requests:
        start = clock()
        decision = decide(request)
        latencies.append((clock() - start) / 1000)
        allowed += decision.allowed
    start = time.perf_counter()
    for request in requests:
        decide(request)
    return latencies, len(requests) / (time.perf_counter() - start), allowed


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def compile_and_warm(document: PolicyDocument, world: World):
    """Compile, then decide once per server so every per-server index exists (as after a few requests)."""
    policy = compile(document)
    for target in world.targets:
        policy.decide(AccessRequest(world.users[0], CLIENTS[0], target, None, NOW))
    return policy


def memory_of(build):
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = build()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return result, used


def report(latencies: list[float], rate: float, allowed: int, label: str) -> float:
    latencies.sort()
    p50, p95, p99 = (percentile(latencies, q) for q in (.5, .95, .99))
    print(f"{label}: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {latencies[-1]:.0f}  "
          f"mean {statistics.fmean(latencies):.1f} us;  {rate:,.0f} decisions/s;  "
          f"allowed {allowed / len(latencies):.0%}")
    return p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("rules", 10_000), ("groups", 1_000), ("users", 100_000), ("servers", 200),
                          ("decisions", 200_000), ("seed", 7), ("runs", 3)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--pin", action="store_true", help="pin this process to CPU 0")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {0})
    rng = random.Random(args.seed)
    print(f"policy decisions: {args.rules:,} rules, {args.groups:,} groups, {args.users:,} users, "
          f"{args.servers} servers, {args.decisions:,} decisions x {args.runs} runs")
    world = timed("generate", lambda: build_world(rng, args))
    known = {t.id: ServerInfo(t.scopes, t.tags) for t in world.targets}
    text = timed("dump_policy", lambda: dump_policy(world.document))
    parsed = timed(f"parse_policy ({len(text) / 1e6:.1f} MB, {text.count(chr(10)):,} lines)",
                   lambda: parse_policy(text, known))
    assert parsed == world.document, "round trip through the policy file changed the document"
    timed("compile", lambda: compile(parsed))
    policy, used = memory_of(lambda: compile_and_warm(parsed, world))
    requests = timed("make requests", lambda: make_requests(rng, world, args.decisions))
    print(f"compiled policy + per-server indexes (tracemalloc)  {used / 2**20:.1f} MiB")
    p99s = []
    for run in range(1, args.runs + 1):
        gc.collect()
        p99s.append(report(*measure(policy, requests), f"run {run}"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS of this process (incl. 100k users, requests, generator) {rss:.0f} MiB")
    p99 = statistics.median(p99s)
    print(f"target p99 <= 50 us: {'meets' if p99 <= 50 else 'MISSES'} (median p99 of {len(p99s)} runs {p99:.1f} us; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
