"""What a SQLite process loads of PostgreSQL's support: nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from broker.storage.db import Database
from broker.storage.migrate import upgrade
from tests.support.broker_config import dev_settings, write

# The served app on a migrated SQLite file, then the inserts that differ by dialect, then what is loaded.
WORKER = """
import datetime as dt, os, sys
from broker.app import create_app_from_environment
from broker.storage import grants, statements
from broker.storage.models import SeenJti
app = create_app_from_environment()
from broker.storage.db import Database
db = Database(os.environ["URL"])
with db.transaction() as session:
    assert grants.first_use_of_jti(session, "k" * 64, "test", dt.datetime.now(dt.UTC))
    session.execute(statements.insert_unless_present(session, SeenJti, ["key_hash"]).values(
        key_hash="k" * 64, purpose="test", expires_at=dt.datetime.now(dt.UTC)))
print(sorted(m for m in sys.modules if m.startswith(("sqlalchemy.dialects.postgresql", "asyncpg", "psycopg"))))
"""


def test_a_sqlite_worker_loads_no_postgresql_module(tmp_path: Path) -> None:
    """SQLAlchemy's PostgreSQL package (its asyncpg, psycopg, pg8000... dialect modules) cost every SQLite worker
    ~2 MiB of memory for nothing: it loads only where a PostgreSQL URL is opened."""
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    database = Database(url)
    upgrade(database)  # in this process: alembic loads every dialect's support
    database.dispose()
    config = write(tmp_path / "broker.toml", dev_settings("http://127.0.0.1:9", url))
    done = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "BROKER_CONFIG": str(config), "URL": url})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
