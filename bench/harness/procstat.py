"""CPU seconds and peak RSS of process trees, read from /proc while a run goes on.

``TreeAccounting`` samples every ``interval`` seconds in a thread of the generator process: it finds
the roots' descendants (uvicorn workers, PostgreSQL backends forked during the run), keeps each
process's last CPU reading (utime + stime) and its largest VmRSS. CPU of a process that exits during
the run is counted up to its last sample.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")


def children_map() -> dict[int, list[int]]:
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat_fields(int(name))
            if stat:
                parents.setdefault(int(stat[1]), []).append(int(name))
    return parents


def tree(roots: Sequence[int]) -> list[int]:
    """``roots`` and all their descendants that are alive now (zombies are not)."""
    kids = children_map()
    found, queue = [], list(roots)
    while queue:
        pid = queue.pop()
        stat = _stat_fields(pid)
        if stat and stat[0] != "Z":
            found.append(pid)
            queue.extend(kids.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float | None:
    stat = _stat_fields(pid)
    return None if not stat else (int(stat[11]) + int(stat[12])) / TICKS  # fields 14, 15: utime, stime


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; the command name may hold spaces, so split after ')'."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


@dataclass
class Usage:
    cpu_s: float  # CPU seconds of the whole tree during the window
    peak_rss_mib: float  # the largest single process (a worker)
    processes: int


class TreeAccounting:
    def __init__(self, roots: Sequence[int], interval: float = 0.2) -> None:
        self.roots, self.interval = list(roots), interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._rss: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeAccounting:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def usage(self) -> Usage:
        cpu = sum(self._last[pid] - self._first.get(pid, 0.0) for pid in self._last)
        return Usage(cpu, max(self._rss.values(), default=0.0), len(self._last))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for pid in tree(self.roots):
            cpu, rss = cpu_seconds(pid), rss_mib(pid)
            if cpu is None or rss is None:
                continue
            # a process born during the window starts from 0 CPU; one seen first is the baseline
            self._first.setdefault(pid, cpu if not self._thread.is_alive() else 0.0)
            self._last[pid] = cpu
            self._rss[pid] = max(self._rss.get(pid, 0.0), rss)


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICKS
