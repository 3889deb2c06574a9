"""A real headless browser for the dashboard and office tests: Debian's chromium driven by Playwright
(`executable_path`, no downloaded browser). Outside CI a machine without chromium skips these tests; in
CI (`CI=true`, where .ci/run installs it) a missing browser fails them."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # screenshots the tests save


def chromium_path() -> str | None:
    return os.environ.get("AIOS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing (.ci/run installs it with apt-get)")
        pytest.skip("chromium is not installed here")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only the browser tests need it

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: object, name: str) -> Path:
    """Save a screenshot as a test artifact (test-artifacts/NAME.png) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    return path


def approve_first(event_type: str, message: str) -> str:
    """A playbook on `event_type` whose run asks a person first (an `approve` step), then does a harmless step."""
    return f"""id: approve-first
description: A fix that asks a person first
on: {event_type}
confidence: 0.9
steps:
  - id: ask
    action: approve
    with: {{message: "{message}", timeout: 10m}}
  - id: fix
    needs: [ask]
    action: shell
    with: {{argv: ["true"]}}
"""


def open_page(browser: object, url: str, ready: str, height: int = 900, width: int = 1400) -> object:
    """A page at `url`, once the JavaScript condition `ready` holds (the socket up, the first state in)."""
    page = browser.new_page(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
    page.goto(url)
    page.wait_for_function(ready, timeout=20_000)
    return page
