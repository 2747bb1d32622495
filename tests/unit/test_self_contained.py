"""The repository stands on its own: no file points a reader at documents that are not in it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Spelled in pieces, so this file does not name them itself.
OUTSIDE = ("SPEC" + "-NOTES", "DESIGN" + ".md", "STYLE" + ".md", "../" + "shared")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".html", ".txt", ".cfg", ".ini", ".sh", ".yml", ".yaml", ".json", ".js", ""}


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.stdout.splitlines()
            if Path(name).suffix in TEXT_SUFFIXES and (ROOT / name).is_file()]


def test_no_file_refers_to_documents_outside_the_repository() -> None:
    found = [f"{path.relative_to(ROOT)}: {name}" for path in tracked_text_files()
             for name in OUTSIDE if name in path.read_text(errors="replace")]
    assert found == []
