"""The dependency direction of docs/architecture.md, enforced on every import in broker/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BROKER = Path(__file__).resolve().parents[2] / "broker"
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")
COMPOSITION_ROOTS = ("broker.cli", "broker.app", "broker.dev")
# room -> rooms of ours it must not import (beyond the rule that nobody imports web or the roots)
FORBIDDEN = {
    "oauth": ("lifecycle",),
    "federation": ("oauth", "lifecycle", "policy", "registry", "audit"),
    "registry": ("oauth", "lifecycle", "federation"),
    "audit": ("oauth", "lifecycle", "federation", "registry", "policy"),
    "policy": ("storage", "oauth", "federation", "registry", "lifecycle", "audit", "keys", "testidp"),
    "storage": ("oauth", "federation", "policy", "registry", "lifecycle", "audit", "keys", "testidp"),
    "keys": ("oauth", "federation", "policy", "registry", "lifecycle", "audit", "testidp"),
    "observability": ("oauth", "federation", "policy", "registry", "lifecycle", "storage", "keys", "testidp",
                      "admin"),
}
# Metrics stay at the edge: the protocol core never imports prometheus_client or broker.observability.
METRICS_USERS = ("observability", "web")


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in BROKER.rglob("*.py"):
        parts = path.relative_to(BROKER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return sorted(found)


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_dependency_direction(module: str, path: Path) -> None:
    imported = imports_of(path)
    own_room = room(module)
    if own_room != "web" and not module.startswith(COMPOSITION_ROOTS):
        assert not {i for i in imported if i.split(".")[0] in WEB_FRAMEWORKS}, "only broker.web imports FastAPI"
        assert not {i for i in imported if i == "broker.web" or i.startswith("broker.web.")}, "nothing imports web"
    if not module.startswith(COMPOSITION_ROOTS):
        assert not {i for i in imported if i.startswith(COMPOSITION_ROOTS)}, "nothing imports the composition roots"
    for forbidden in FORBIDDEN.get(own_room, ()):
        assert not {i for i in imported if i.startswith(f"broker.{forbidden}")}, f"{own_room} must not use {forbidden}"


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_only_the_edge_knows_metrics(module: str, path: Path) -> None:
    if room(module) in METRICS_USERS or module.startswith(COMPOSITION_ROOTS):
        return
    imported = imports_of(path)
    assert not {i for i in imported if i.split(".")[0] == "prometheus_client"}, "only observability uses prometheus"
    assert not {i for i in imported if i.startswith("broker.observability")}, "the core does not know metrics"


@pytest.mark.parametrize("module,path", [(m, p) for m, p in modules() if room(m) == "config"],
                         ids=[m for m, _ in modules() if room(m) == "config"])
def test_config_imports_nothing_of_ours(module: str, path: Path) -> None:
    ours = {i for i in imports_of(path) if i.split(".")[0] == "broker"}
    assert {i for i in ours if not i.startswith("broker.config")} == set(), "config is imported by all, imports none"


@pytest.mark.parametrize("module,path", [(m, p) for m, p in modules() if room(m) == "resource"],
                         ids=[m for m, _ in modules() if room(m) == "resource"])
def test_resource_imports_nothing_of_ours_outside_it(module: str, path: Path) -> None:
    ours = {i for i in imports_of(path) if i.split(".")[0] == "broker"}
    assert {i for i in ours if not i.startswith("broker.resource")} == set(), "MCP servers embed broker.resource alone"


# All SQL is in broker/storage: these rooms take a Session to pass on and catch SQLAlchemy's errors, no more
# (``event``: a hook on a session's commit, as the audit observers', runs no statement).
NO_SQL_ROOMS = ("admin", "audit", "cli", "lifecycle", "web")
SQLALCHEMY_ALLOWED = {"sqlalchemy": {"exc", "event"}, "sqlalchemy.orm": {"Session"}, "sqlalchemy.exc": None}


def sqlalchemy_names(path: Path) -> set[str]:
    """What a module takes from SQLAlchemy beyond ``SQLALCHEMY_ALLOWED`` (module.name)."""
    taken = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            taken |= {alias.name for alias in node.names if alias.name.split(".")[0] == "sqlalchemy"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            allowed = SQLALCHEMY_ALLOWED.get(node.module, set())
            taken |= {f"{node.module}.{alias.name}" for alias in node.names
                      if allowed is not None and alias.name not in allowed}
    return taken


def statements_run(path: Path) -> set[str]:
    """Calls that run a statement on a session (``session.execute(...)``, ``db.scalars(...)``, ``.get(Model, ...)``)."""
    runs = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("session", "db"):
            if node.func.attr in ("execute", "scalar", "scalars", "get", "query"):
                runs.add(f"{node.func.value.id}.{node.func.attr} at line {node.lineno}")
    return runs


@pytest.mark.parametrize("module,path", [(m, p) for m, p in modules() if room(m) in NO_SQL_ROOMS],
                         ids=[m for m, _ in modules() if room(m) in NO_SQL_ROOMS])
def test_no_sql_outside_storage(module: str, path: Path) -> None:
    assert sqlalchemy_names(path) == set(), "statements are built in broker/storage"
    assert statements_run(path) == set(), "statements are run in broker/storage"
