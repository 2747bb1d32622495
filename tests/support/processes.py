"""Run the broker (or any server) as a real process on a free loopback port, and stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.support import broker_config
from tests.support.deathwatch import DeathWatch
from tests.support.postgres import free_port

BROKER = [sys.executable, "-m", "broker.cli"]
# What a DeathWatch runs if the test process dies with the server still up: SIGKILL its process group.
_KILL_GROUP = "import os, signal, sys\ntry: os.killpg(int(sys.argv[1]), signal.SIGKILL)\nexcept OSError: pass"


class ServerProcess:
    """A child process serving HTTP on 127.0.0.1:``port``; output goes to ``log_path``."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, port: int | None = None,
                 cwd: Path | None = None):
        self.port = port or free_port()
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        # no drain on SIGTERM unless a test asks for one: every stop would wait for it (tests/e2e/test_shutdown.py)
        self.env = {**os.environ, "BROKER_SERVER__SHUTDOWN_DRAIN": "0", **env}
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._watch: DeathWatch | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/readyz", timeout: float = 30.0) -> ServerProcess:
        # a second process would find the port taken and answer nothing, while the first is never stopped
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the server is running already: use start() or `with`, not both")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self._release()
        self._watch = DeathWatch([sys.executable, "-c", _KILL_GROUP, str(self.proc.pid)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base_url + ready_path, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.output()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL; return the exit code."""
        try:
            if self.proc is None or self.proc.poll() is not None:
                return None if self.proc is None else self.proc.returncode
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                return self.proc.wait(timeout)
        finally:
            self._release()

    def _release(self) -> None:
        if self._watch is not None:
            self._watch.release()
            self._watch = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def run_broker(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a one-shot ``broker`` command to completion (no stdin, bounded time)."""
    return subprocess.run([*BROKER, *args], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)


def everyone_may_reach(server_id: str, directory: Path) -> Path:
    """A policy file letting every signed-in user reach ``server_id`` with all its scopes (e2e setups)."""
    path = directory / f"policy-{server_id}.toml"
    path.write_text(f'[[rules]]\nid = "everyone-{server_id}"\neffect = "allow"\nscopes = "*"\n\n'
                    f'[rules.subjects]\neveryone = true\n\n[rules.targets]\nservers = ["{server_id}"]\n')
    return path


def serve_config(path: Path, issuer: str, database_url: str | None = None, kek: str | None = None,
                 **sections: Any) -> Path:
    """A config file for ``broker serve`` whose upstream IdP is its built-in test IdP with one user,
    alice / alice-pw (group engineering); ``database_url`` None: SQLite under the working directory;
    ``sections`` merge over that (``rate_limits={"enabled": False}``)."""
    return broker_config.write(path, broker_config.merged(
        broker_config.dev_settings(issuer, database_url, kek, **broker_config.with_testidp(issuer)), sections))


def registered_app(env: dict[str, str], resource: str, directory: Path, trusted: bool = True) -> str:
    """``broker db upgrade``, an MCP server ``mcp`` at ``resource`` (scope ``read``) that everyone may reach,
    and a public client ``app`` redirecting to ``tests.support.http_flow.REDIRECT``; returns its client_id."""
    for command in (("db", "upgrade"),
                    ("servers", "add", "--id", "mcp", "--name", "MCP", "--resource", resource, "--scopes", "read"),
                    ("policy", "import", str(everyone_may_reach("mcp", directory)))):
        done = run_broker(*command, env=env, cwd=directory)
        assert done.returncode == 0, done.stderr
    added = run_broker("clients", "add", "--name", "app", "--redirect-uri", "http://127.0.0.1:9/cb", "--json",
                       *(["--trusted"] if trusted else []), env=env, cwd=directory)
    assert added.returncode == 0, added.stderr
    return str(json.loads(added.stdout)["client_id"])
