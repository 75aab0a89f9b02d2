"""A real Chromium (Debian's package) driven by Playwright, and what every page must not do.

No browser is downloaded: Playwright starts /usr/bin/chromium. Without it the
tests are skipped on a developer's machine and fail under CI=true (.ci/run
installs it). Screenshots go to artifacts/browser/ (gitignored; the path is printed).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

CHROMIUM = Path(os.environ.get("TRACKER_TEST_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
# Runs before any page script and outside the page's CSP: records every violation.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@dataclass
class Watched:
    """A page and the console errors and page errors it produced."""

    page: Page
    problems: list[str] = field(default_factory=list)

    async def assert_clean(self) -> None:
        """No console error, no uncaught exception and no CSP violation so far."""
        violations = await self.page.evaluate("window.__csp || []")
        assert self.problems == []
        assert violations == []

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=path, full_page=True)
        print(f"screenshot: {path}")  # noqa: T201 - the artifact's path, for whoever looks
        return path


def require_chromium() -> None:
    """Skip without the browser, except under CI, where a missing browser is a failure."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def watched(browser: Browser) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(WATCH_CSP)
    page = await context.new_page()
    found = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            found.problems.append(f"console: {message.text}")

    def on_error(error: Error) -> None:
        found.problems.append(f"page error: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    try:
        yield found
    finally:
        await context.close()
