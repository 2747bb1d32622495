"""Pinning: every server process (broker workers, PostgreSQL, node, the bare app) on the server core,
the load generator (this process) on the other.

On the 2-core machine the server core is 0 and the generator core is 1. `broker serve --workers 2`
then runs both workers on core 0: two workers measure what process-level concurrency costs or gains
on one core, not a second core's capacity (the generator has that core). PostgreSQL shares core 0
with the server, as a co-located database would.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.harness.procstat import tree
from tests.support.processes import ServerProcess

SERVER_CPUS = "0"
GENERATOR_CPUS = "1"


def can_pin() -> bool:
    return (os.cpu_count() or 1) >= 2


def pin_generator() -> None:
    """Pin this process (the load generator and its sampling thread) to the generator core."""
    if can_pin():
        os.sched_setaffinity(0, {int(c) for c in GENERATOR_CPUS.split(",")})


def pinned(args: list[str]) -> list[str]:
    """``args`` run under ``taskset -c <server core>`` (taskset execs, so the pid is the server's)."""
    return ["taskset", "-c", SERVER_CPUS, *args] if can_pin() else args


def pin_tree(root: int) -> None:
    """Move an already running tree (PostgreSQL's postmaster and backends) to the server core;
    processes it forks later inherit the affinity."""
    if not can_pin():
        return
    cpus = {int(c) for c in SERVER_CPUS.split(",")}
    for pid in tree([root]):
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(task), cpus)
            except OSError:
                pass


def postmaster_pid(port: int) -> int | None:
    """The postmaster listening on ``port`` (its command line carries ``-p <port>``)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"postgres") and b"-p" in argv and str(port).encode() in argv:
            return int(name)
    return None


def start_pinned(args: list[str], env: dict[str, str], log: Path, port: int, ready_path: str,
                 cwd: Path | None = None) -> ServerProcess:
    return ServerProcess(pinned(args), env=env, log_path=log, port=port, cwd=cwd).start(ready_path=ready_path,
                                                                                      timeout=60)
