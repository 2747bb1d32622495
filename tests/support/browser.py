"""Debian's Chromium driven by Playwright, for browser tests: never Playwright's own browser downloads.

    with chromium(tmp_path / "profile") as context:
        page = context.new_page()

A fresh user-data directory per use; headless, no sandbox (containers), and no background traffic.
Tests skip when /usr/bin/chromium or the playwright package is missing (``make test`` installs both).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (tests/support/ensure-chromium.sh installs it)")
    pytest.importorskip("playwright.sync_api")


@contextmanager
def chromium(user_data_dir: Path) -> Iterator[Any]:
    """A browser context with its own profile directory; closed (and the browser with it) on exit."""
    from playwright.sync_api import sync_playwright

    user_data_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": 1360, "height": 900})
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save the whole page as tests/artifacts/<name>.png for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
