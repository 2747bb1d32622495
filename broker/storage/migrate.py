"""Alembic, driven from code: upgrade to head. Only the commands that migrate import this module (alembic
costs ~10 MiB per process); serving processes check the revision with ``broker.storage.schema``."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError, RevisionError
from alembic.util.exc import CommandError
from sqlalchemy.exc import DBAPIError

from broker import bundled
from broker.storage import schema
from broker.storage.db import Database, DatabaseError, first_line

Report = Callable[[str], None]


class MigrationError(DatabaseError):
    """The migrations cannot run: missing from this installation, or alembic refused (one line)."""


def alembic_config(database: Database | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(bundled.MIGRATIONS))
    if database is not None:
        cfg.attributes["engine"] = database.engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions is empty"
    return head


def upgrade(database: Database, report: Report | None = None) -> tuple[str | None, str]:
    """Bring the database to head; return (revision before, revision after). A schema a newer release
    migrated is left alone when it still supports this code, refused (``DatabaseError``) otherwise.
    ``report`` gets progress lines once the upgrade has taken a second."""
    state = schema.read(database)
    if state.verdict is schema.Verdict.INCOMPATIBLE:
        raise DatabaseError(state.problem() or "")
    if state.verdict is schema.Verdict.AHEAD:
        assert state.revision is not None
        return state.revision, state.revision
    if missing := bundled.incomplete("migrations"):
        raise MigrationError(missing)
    cfg = alembic_config(database)
    with Progress(pending(cfg, state.revision), report or (lambda line: None)) as progress:
        cfg.attributes["on_version_apply"] = (progress.applied,)
        try:
            command.upgrade(cfg, "head")
        except CommandError as exc:
            raise MigrationError(f"migrations: {str(exc).splitlines()[0]}") from None
        except DBAPIError as exc:  # e.g. a role that may not change the schema
            step = progress.steps[min(progress.done, len(progress.steps) - 1)]
            raise MigrationError(f"migration {step} failed: {first_line(exc)}") from None
    return state.revision, head_revision()


def pending(cfg: Config, current: str | None) -> list[str]:
    """The steps from ``current`` to head, oldest first, each as "revision (what it does)"."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # alembic warns, then fails, on a missing revision: the failure says it
            scripts = list(ScriptDirectory.from_config(cfg).iterate_revisions("head", current or "base"))
    except ResolutionError as exc:
        raise MigrationError(f"migrations: no script for revision {exc.argument!r} in {bundled.MIGRATIONS} (the "
                             f"database is at {current or 'no revision'})") from None
    except (CommandError, RevisionError) as exc:
        raise MigrationError(f"migrations: {str(exc).splitlines()[0]}") from None
    except KeyError as exc:  # the revision map: a script names a down_revision no script has
        raise MigrationError(f"migrations: revision {exc} is missing from {bundled.MIGRATIONS}") from None
    except (ImportError, SyntaxError) as exc:
        raise MigrationError(f"migrations: a script in {bundled.MIGRATIONS} does not load: {exc}") from None
    return [f"{s.revision} ({(s.doc or '').strip().splitlines()[0] if s.doc else 'no description'})"
            for s in reversed(scripts) if s.revision != current]


class Progress:
    """Once an upgrade has run for ``FIRST`` seconds: a line as each step ends, and every ``EVERY``
    seconds one naming the step still running. Quicker upgrades say nothing."""

    FIRST = 1.0
    EVERY = 5.0

    def __init__(self, steps: list[str], report: Report):
        self.steps, self.report = steps, report
        self.done = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ticker = threading.Thread(target=self._tick, name="migration-progress", daemon=True)

    def __enter__(self) -> Progress:
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._ticker.join()

    def applied(self, **kw: Any) -> None:
        """alembic's ``on_version_apply``: a step has run (in its transaction)."""
        with self._lock:
            self.done += 1
            if self.elapsed() >= self.FIRST and self.done <= len(self.steps):
                self.report(f"migrated {self.steps[self.done - 1]} [{self.done}/{len(self.steps)}] "
                            f"at {self.elapsed():.1f} s")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _tick(self) -> None:
        wait = self.FIRST
        while not self._stop.wait(wait):
            wait = self.EVERY
            with self._lock:  # never a step reported as running after the line saying it ran
                if self.done < len(self.steps):
                    self.report(f"migrating {self.steps[self.done]} [{self.done + 1}/{len(self.steps)}], "
                                f"{self.elapsed():.0f} s so far")
