"""Clean-up that outlives the test process.

``atexit`` handlers do not run when a test run is killed (SIGKILL, a CI timeout, a second Ctrl-C), and the
servers the tests started would stay up. A ``DeathWatch`` is a small sidecar process that waits on a pipe
only this process holds open: ``release()`` (the normal path) tells it to exit quietly; if this process dies
first, the kernel closes the pipe and the sidecar runs the clean-up command, then removes a directory.

    watch = DeathWatch([pg_ctl, "-D", data_dir, "stop", "-m", "immediate"], remove=base_dir)
    ...
    watch.release()
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

RELEASED = b"r"
# The sidecar: it reads until the pipe closes; only an empty read (its writer died) means clean up.
_SIDECAR = """
import shutil, subprocess, sys
if sys.stdin.buffer.read() == b"":
    subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if sys.argv[1]:
        shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


class DeathWatch:
    """Runs ``command`` (then removes ``remove``, if given) when this process dies without ``release()``."""

    def __init__(self, command: Sequence[str], remove: str | os.PathLike[str] | None = None) -> None:
        read_end, self._write_end = os.pipe()  # not inheritable: no other child keeps the pipe open
        try:
            # A session of its own: the Ctrl-C that stops the test run must not stop the sidecar too.
            self._sidecar: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-c", _SIDECAR, os.fspath(remove) if remove is not None else "", *command],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(read_end)

    def release(self) -> None:
        """The clean-up happened the normal way: the sidecar exits without acting. Safe to call twice."""
        if self._sidecar is None:
            return
        try:
            os.write(self._write_end, RELEASED)
        finally:
            os.close(self._write_end)
        sidecar, self._sidecar = self._sidecar, None
        sidecar.wait(timeout=10)
