"""Build this checkout's wheel and install it into a scratch virtual environment, as an operator would.

The wheel is built from a copy of the files git knows (tracked, or new and not ignored), so nothing
left in the checkout (``build/``, an egg-info, a stale file) reaches it. Its dependencies are installed
from ``tests/artifacts/wheelhouse``, which ``pip wheel`` fills from the package registries the first
time (and again whenever the wheel asks for something it lacks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / "tests" / "artifacts" / "wheelhouse"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


@dataclass(frozen=True)
class Installed:
    """A venv holding the wheel; ``home`` is an empty directory outside the checkout to run it from."""

    venv: Path
    home: Path

    @property
    def broker(self) -> str:
        return str(self.venv / "bin" / "broker")

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a shell with only this venv on PATH: no BROKER_* or PYTHON* from the suite."""
        kept = {k: v for k, v in os.environ.items()
                if not k.startswith(("BROKER_", "PYTHON", "VIRTUAL_ENV")) and k != "PATH"}
        return {**kept, "PATH": f"{self.venv / 'bin'}{os.pathsep}/usr/bin:/bin", **extra}

    def run(self, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.broker, *args], cwd=cwd or self.home, env=self.env(**env), capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=120, check=False)

    def python(self, code: str) -> str:
        done = subprocess.run([str(self.venv / "bin" / "python"), "-c", code], cwd=self.home, env=self.env(),
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout


def source_copy(destination: Path) -> Path:
    """The files git knows, copied with their symbolic links kept as links."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, target = ROOT / name, destination / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted in the working tree, not yet in the index
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return destination


def build_wheel(work: Path) -> Path:
    source = source_copy(work / "source")
    out = work / "dist"
    subprocess.run([*PIP, "wheel", "--no-deps", "-q", "-w", str(out), str(source)], check=True,
                   capture_output=True, timeout=600)
    [wheel] = out.glob("mcp_auth_broker-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> None:
    """A fresh venv with the wheel and its dependencies (from the wheelhouse; filled on a miss)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    command = [*PIP, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile", "--no-index",
               "--find-links", str(WHEELHOUSE), str(wheel)]
    if subprocess.run(command, capture_output=True, timeout=600).returncode != 0:
        subprocess.run([*PIP, "wheel", "-q", "-w", str(WHEELHOUSE), str(wheel)], check=True, capture_output=True,
                       timeout=1800)
        subprocess.run(command, check=True, capture_output=True, timeout=600)


def built_and_installed(work: Path) -> Installed:
    venv, home = work / "venv", work / "home"
    install(build_wheel(work), venv)
    home.mkdir()
    return Installed(venv, home)
