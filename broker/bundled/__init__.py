"""The files the broker ships beside its code: templates (with static/), migrations, the demo MCP server.

In the repository they stay at the top level (``templates/``, ``migrations/``, ``examples/``) and this
directory holds links to them; a wheel carries them here as plain files (``package-data`` in
pyproject.toml). So a checkout, an editable install and a wheel all find them at the same place.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

HERE = Path(str(resources.files(__name__)))
TEMPLATES = HERE / "templates"
STATIC = TEMPLATES / "static"
MIGRATIONS = HERE / "migrations"
DEMO_SERVER = HERE / "examples" / "protected_server.py"


def incomplete(*parts: str) -> str | None:
    """One line naming the first of ``parts`` (templates, static files, migrations) missing from this
    installation, None when all are there: a broken install is told apart from a broken request."""
    marker = {"templates": TEMPLATES / "base.html", "static files": STATIC / "broker.css",
              "migrations": MIGRATIONS / "env.py"}
    for part in parts:
        if not marker[part].is_file():
            return (f"no {part} at {marker[part].parent}: this installation of mcp-auth-broker is incomplete "
                    "(reinstall it)")
    return None
