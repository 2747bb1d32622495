"""tests/support/deathwatch.py: the clean-up runs when the test process is killed, and only then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys, time
from tests.support.deathwatch import DeathWatch
watch = DeathWatch(["touch", sys.argv[1]], remove=sys.argv[2])
if sys.argv[3] == "release":
    watch.release()
print("watching", flush=True)
time.sleep(60)
"""


def _run_and_kill(tmp_path: Path, mode: str) -> tuple[Path, Path]:
    marker, doomed = tmp_path / "cleaned", tmp_path / "doomed"
    doomed.mkdir()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), str(doomed), mode],
                             stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    assert child.stdout is not None and child.stdout.readline() == b"watching\n"
    os.kill(child.pid, signal.SIGKILL)  # no atexit, no finally: what a CI timeout does
    child.wait()
    return marker, doomed


def _eventually(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_killed_process_still_gets_its_clean_up(tmp_path: Path) -> None:
    marker, doomed = _run_and_kill(tmp_path, "keep")
    assert _eventually(lambda: marker.exists() and not doomed.exists())


def test_a_released_watch_does_nothing_when_the_process_dies(tmp_path: Path) -> None:
    marker, doomed = _run_and_kill(tmp_path, "release")
    time.sleep(0.5)  # what the sidecar would need to act, had it not exited
    assert not marker.exists() and doomed.exists()
