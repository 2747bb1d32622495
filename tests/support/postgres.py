"""Throwaway PostgreSQL servers for tests.

`PostgresServer` runs a private cluster in a fresh temporary directory,
listening on 127.0.0.1 and a free port, with trust authentication and the
durability settings turned off for speed. Nothing of it outlives `stop()`.

    with PostgresServer() as server:
        url = server.create_database("broker_test")   # SQLAlchemy URL
        ...

The PostgreSQL binaries (`initdb`, `pg_ctl`) are taken from PATH, else from
the highest version under /usr/lib/postgresql/*/bin. If there are none,
run `tests/support/ensure-postgres.sh` (as root it installs them).

initdb refuses to run as root. When this process is root, the server's
commands run as an unprivileged system user through `runuser`: `postgres`
if it exists, else `brokertest`, which is created on first use.

Run `python -m tests.support.postgres` to start one by hand: it prints the
URL and keeps the server until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import atexit
import glob
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.parse
from collections.abc import Sequence

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.support.deathwatch import DeathWatch

SUPERUSER = "broker"
HOST = "127.0.0.1"
FALLBACK_OS_USER = "brokertest"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
LOG_TAIL_LINES = 40
PORT_ATTEMPTS = 3

_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
_HBA = f"local all all trust\nhost all all {HOST}/32 trust\n"


class PostgresError(RuntimeError):
    """The test server could not be found, started or used."""


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1:<free port>, in a temp dir, for one test session."""

    def __init__(self, base_dir: pathlib.Path | None = None, settings: dict[str, str] | None = None) -> None:
        """Prepare a server; `base_dir` is where its temp dir goes (default: the system temp dir);
        `settings` override the test settings (e.g. {"synchronous_commit": "on"} for crash tests)."""
        self._base_dir = base_dir
        self._settings = {**_SETTINGS, **(settings or {})}
        self._bin_dir = find_bin_dir()
        self._os_user: str | None = None
        self._dir: pathlib.Path | None = None
        self._port: int | None = None
        self._watch: DeathWatch | None = None

    # -- public API ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        if self._port is None:
            raise PostgresError("the server is not running; call start() first")
        return self._port

    @property
    def user(self) -> str:
        """The database superuser name (trust auth, no password)."""
        return SUPERUSER

    def start(self) -> PostgresServer:
        """Create the cluster and start it; return once it accepts connections."""
        if self._dir is not None:
            raise PostgresError("the server is already started")
        self._os_user = _unprivileged_user() if os.geteuid() == 0 else None
        self._dir = self._make_dir()
        atexit.register(self.stop)
        # atexit does not run when the test run is killed: the watch stops the cluster and removes it then.
        self._watch = DeathWatch(self._as_os_user([self._bin("pg_ctl"), "-D", str(self._data_dir), "stop",
                                                   "-m", "immediate", "-w"]), remove=self._dir)
        try:
            self._initdb()
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and remove its directory. Safe to call more than once."""
        if self._dir is None:
            return
        try:
            if (self._data_dir / "postmaster.pid").exists():
                self._shutdown()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._port = None
            atexit.unregister(self.stop)
            if self._watch is not None:
                self._watch.release()
                self._watch = None

    def halt(self, mode: str = "fast") -> None:
        """pg_ctl stop -m `mode` (smart, fast or immediate), keeping the cluster for `resume()`."""
        result = self._pg_ctl("stop", "-m", mode, "-w", "-t", str(STOP_TIMEOUT_S))
        if result.returncode != 0:
            raise PostgresError(self._failure(f"pg_ctl stop -m {mode} failed", result))

    def resume(self) -> None:
        """Start the halted cluster again on the same port; return once it accepts connections."""
        result = self._pg_ctl("start", "-l", str(self._log_file), "-o", f"-p {self.port}", "-w",
                              "-t", str(START_TIMEOUT_S))
        if result.returncode != 0:
            raise PostgresError(self._failure("pg_ctl start failed", result))
        self._wait_until_ready()

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of database `dbname`: postgresql+psycopg://broker@127.0.0.1:<port>/<dbname>."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{urllib.parse.quote(dbname, safe='')}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string of database `dbname`, for psycopg.connect()."""
        return make_conninfo(host=HOST, port=self.port, user=SUPERUSER, dbname=dbname)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` and return its SQLAlchemy URL."""
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name`, disconnecting its sessions (WITH (FORCE))."""
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    # -- paths ----------------------------------------------------------------

    @property
    def _data_dir(self) -> pathlib.Path:
        assert self._dir is not None
        return self._dir / "data"

    @property
    def _log_file(self) -> pathlib.Path:
        assert self._dir is not None
        return self._dir / "postgres.log"

    def _make_dir(self) -> pathlib.Path:
        """Create the temp dir and hand it to the OS user the server runs as."""
        path = pathlib.Path(tempfile.mkdtemp(prefix="broker-pg-", dir=self._base_dir)).resolve()
        if self._os_user is not None:
            entry = pwd.getpwnam(self._os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
            if self._run(["test", "-w", str(path)], check=False).returncode != 0:
                shutil.rmtree(path, ignore_errors=True)
                raise PostgresError(
                    f"user {self._os_user!r} cannot reach {path}: every parent directory "
                    "must be searchable by others (chmod o+x), or pass another base_dir"
                )
        return path

    # -- lifecycle steps ------------------------------------------------------

    def _initdb(self) -> None:
        """Run initdb, then write the test settings and the host-based auth file."""
        assert self._dir is not None
        options = ["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        self._run([self._bin("initdb"), "-D", str(self._data_dir), *options])
        settings = dict(self._settings, unix_socket_directories=_quote_setting(str(self._dir)))
        with open(self._data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# tests.support.postgres\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        # Opening the existing files keeps their owner (the server's OS user).
        (self._data_dir / "pg_hba.conf").write_text(_HBA, encoding="utf-8")

    def _launch(self) -> None:
        """pg_ctl start on a free port, retrying if another process takes the port first."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            result = self._pg_ctl(
                "start", "-l", str(self._log_file), "-o", f"-p {port}", "-w", "-t", str(START_TIMEOUT_S)
            )
            if result.returncode == 0:
                self._port = port
                self._wait_until_ready()
                return
            if "Address already in use" not in self._log_tail() or attempt == PORT_ATTEMPTS:
                raise PostgresError(self._failure("pg_ctl start failed", result))

    def _wait_until_ready(self) -> None:
        """Poll with psycopg until `select 1` works, within START_TIMEOUT_S."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.conninfo(), connect_timeout=2) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise PostgresError(
                        f"server on port {self._port} did not accept connections within "
                        f"{START_TIMEOUT_S}s: {error}\n--- server log (tail) ---\n{self._log_tail()}"
                    ) from error
                time.sleep(0.1)

    def _shutdown(self) -> None:
        """pg_ctl stop -m fast, then -m immediate, then SIGKILL as the last resort."""
        for mode in ("fast", "immediate"):
            if self._pg_ctl("stop", "-m", mode, "-w", "-t", str(STOP_TIMEOUT_S)).returncode == 0:
                return
            if not (self._data_dir / "postmaster.pid").exists():
                return
        pid = _postmaster_pid(self._data_dir)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- helpers ------------------------------------------------------------

    def _admin(self, statement: sql.Composed) -> None:
        """Run one statement on the `postgres` database in autocommit mode."""
        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def _bin(self, name: str) -> str:
        return str(self._bin_dir / name)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([self._bin("pg_ctl"), "-D", str(self._data_dir), *args], check=False)

    def _run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command as the server's OS user, in the server's directory."""
        argv = self._as_os_user(argv)
        result = subprocess.run(
            argv,
            cwd=self._dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise PostgresError(self._failure(f"{pathlib.Path(argv[0]).name} failed", result))
        return result

    def _as_os_user(self, argv: Sequence[str]) -> list[str]:
        return ["runuser", "-u", self._os_user, "--", *argv] if self._os_user is not None else list(argv)

    def _failure(self, what: str, result: subprocess.CompletedProcess[str]) -> str:
        output = (result.stdout + result.stderr).strip()
        return (
            f"{what} (exit {result.returncode}): {' '.join(result.args)}\n{output}\n"
            f"--- server log (tail) ---\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self._log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-LOG_TAIL_LINES:])


def find_bin_dir() -> pathlib.Path:
    """Directory holding initdb and pg_ctl: PATH first, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    candidates = [pathlib.Path(on_path).resolve().parent] if on_path else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [pathlib.Path(p) for p in sorted(versions, key=_version_key, reverse=True)]
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return directory
    raise PostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin; "
        "run tests/support/ensure-postgres.sh (as root it installs them)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _version_key(bin_dir: str) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin; non-numeric versions sort first."""
    version = pathlib.Path(bin_dir).parent.name
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def _unprivileged_user() -> str:
    """The OS user to run the server as when we are root; creates `brokertest` if needed."""
    for name in ("postgres", FALLBACK_OS_USER):
        if _user_exists(name):
            return name
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_OS_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 and not _user_exists(FALLBACK_OS_USER):
        raise PostgresError(f"cannot create system user {FALLBACK_OS_USER!r}: {result.stderr.strip()}")
    return FALLBACK_OS_USER


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _postmaster_pid(data_dir: pathlib.Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _quote_setting(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM arrives."""
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        signal.sigwait(signals)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def main() -> int:
    """Start a server, print its URL, stop it on Ctrl-C or SIGTERM."""
    try:
        with PostgresServer() as server:
            print(server.url(), flush=True)
            print(f"PostgreSQL {server.port} running; Ctrl-C to stop", file=sys.stderr, flush=True)
            _wait_for_signal()
    except PostgresError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
