"""What a broker worker loads of the MCP SDK: nothing (broker.resource is for MCP servers; the broker's token
endpoint uses only its DPoP proof checker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from broker.storage.db import Database
from broker.storage.migrate import upgrade
from tests.support.broker_config import dev_settings, write

WORKER = """
import sys
from broker.app import create_app_from_environment
app = create_app_from_environment()
import broker.resource
assert broker.resource.DpopProof is not None  # the checker, from its own module
print(sorted(m for m in sys.modules if m.split(".")[0] in ("mcp", "mcp_types", "sse_starlette")))
"""


def test_a_broker_worker_loads_no_mcp_sdk_module(tmp_path: Path) -> None:
    """broker.resource's package imported the SDK's verifier and middleware for every name, so the token endpoint's
    import of the DPoP proof checker cost each worker ~18 MiB (197 modules): its names now load on first use."""
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    database = Database(url)
    upgrade(database)
    database.dispose()
    config = write(tmp_path / "broker.toml", dev_settings("http://127.0.0.1:9", url))
    done = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "BROKER_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
