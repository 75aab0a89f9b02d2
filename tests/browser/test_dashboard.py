"""The dashboard in a real Chromium: log in, tiles vs /v1/stats, a tile's list, a timeline,
cancel, live refresh on a delivery report, and no console errors or CSP violations."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests import dashboard_support as support
from tests.browser.conftest import Watched
from tests.conftest import SettingsFactory
from tests.factories import add_message
from tests.provider_loop import dispatching, loop, sandbox_config
from tracker import db
from tracker.domain import status
from tracker.settings import Settings

Status = status.Status
SEEDED = (Status.DELIVERED, Status.DELIVERED, Status.DELIVERED, Status.FAILED, Status.QUEUED)


@pytest.fixture
def tracker(make_settings: SettingsFactory, database_url: str) -> Iterator[tuple[Settings, str]]:
    """The tracker over HTTP on loopback, with the sandbox as its provider."""
    config = sandbox_config(callback_delay_seconds=2.0, failure_ratio=0.0)
    with loop(make_settings, database_url, config) as (settings, _sandbox):
        yield settings, settings.public_url


async def get_json(url: str, key: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient() as client:
        found: dict[str, Any] = (await client.get(url, headers=headers)).json()
    return found


async def log_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/dashboard")
    await expect(page).to_have_url(f"{base}/dashboard/login?next=/dashboard")
    await page.fill("input[name=key]", key)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{base}/dashboard")


async def shown_tiles(page: Page) -> dict[str, str]:
    names = await page.locator("[data-tile]").evaluate_all(
        "tiles => tiles.map(t => [t.dataset.tile, t.querySelector('.value').textContent])"
    )
    return dict(names)


async def test_tiles_agree_with_stats_and_lead_to_their_rows(
    tracker: tuple[Settings, str],
    database: db.Database,
    make_key: Callable[..., Any],
    watched: Watched,
) -> None:
    """After login each tile shows /v1/stats' number; the failed tile lists exactly those rows."""
    _settings, base = tracker
    for state in SEEDED:
        await add_message(database, status=state)
    key = await make_key("app", "send,read")
    page = watched.page
    await log_in(page, base, key)
    await expect(page.locator("#charts")).to_have_attribute("data-drawn", "25")
    stats = await get_json(f"{base}/v1/stats", key)
    expected = support.expected_tiles(stats)
    shown = await shown_tiles(page)
    assert {name: shown[name] for name in expected} == expected
    assert shown["delivered"] == "3"
    await watched.screenshot("overview")
    await page.click("[data-tile=failed]")
    await expect(page).to_have_url(re.compile(r"/dashboard/messages\?status=failed&created_after="))
    rows = page.locator("tr[data-message]")
    await expect(rows).to_have_count(int(expected["failed"]))
    await expect(rows.locator("td.status")).to_have_text(["failed"])
    await watched.screenshot("failed-list")
    await watched.assert_clean()


async def send(base: str, key: str, to: str = "0712345678") -> str:
    """One message through the API, as an app sends it; its id."""
    async with httpx.AsyncClient(base_url=base) as client:
        answer = await client.post(
            "/v1/messages",
            json={"to": to, "message": "Your code is 123456"},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert answer.status_code in {201, 202}, answer.text
    message_id: str = answer.json()["id"]
    return message_id


async def test_a_timeline_opens_and_the_cancel_button_cancels(
    tracker: tuple[Settings, str], make_key: Callable[..., Any], watched: Watched
) -> None:
    """A queued message's page shows its timeline; the button cancels it (a CSRF POST)."""
    _settings, base = tracker
    key = await make_key("app", "send,read")
    message_id = await send(base, key)  # no dispatcher runs: it stays queued
    page = watched.page
    await log_in(page, base, key)
    await page.goto(f"{base}/dashboard/messages?q={message_id}")
    await expect(page).to_have_url(f"{base}/dashboard/messages/{message_id}")
    await expect(page.locator("[data-field=status]")).to_have_text("queued")
    await expect(page.locator(".timeline li")).to_have_count(1)
    await page.click("#cancel")
    await expect(page.locator("[data-field=status]")).to_have_text("cancelled")
    await expect(page.locator(".timeline li[data-event=cancelled]")).to_have_count(1)
    await expect(page.locator("#cancel")).to_have_count(0)
    await watched.screenshot("message-cancelled")
    await watched.assert_clean()


async def test_pages_update_by_themselves_when_a_delivery_report_arrives(
    tracker: tuple[Settings, str],
    database: db.Database,
    make_key: Callable[..., Any],
    watched: Watched,
) -> None:
    """Overview and message page show the report without a reload (htmx polling)."""
    settings, base = tracker
    key = await make_key("app", "send,read")
    page = watched.page
    await log_in(page, base, key)
    await expect(page.locator("[data-tile=delivered] .value")).to_have_text("0")
    await page.evaluate("window.__same_document = true")
    async with dispatching(settings, database):
        await send(base, key)
        await expect(page.locator("[data-tile=delivered] .value")).to_have_text("1", timeout=20_000)
        assert await page.evaluate("window.__same_document === true")  # no full reload
        second = await send(base, key)
        await page.goto(f"{base}/dashboard/messages/{second}")
        await expect(page.locator("[data-field=status]")).not_to_have_text("delivered")
        await page.evaluate("window.__same_document = true")
        await expect(page.locator("[data-field=status]")).to_have_text("delivered", timeout=20_000)
        assert await page.evaluate("window.__same_document === true")
    await expect(page.locator(".timeline li[data-event=delivered]")).to_have_count(1)
    await watched.screenshot("message-delivered")
    await watched.assert_clean()


async def test_the_api_docs_render_in_swagger_ui(
    tracker: tuple[Settings, str], watched: Watched
) -> None:
    """/docs draws every operation of /openapi.json from the vendored Swagger UI."""
    _settings, base = tracker
    page = watched.page
    await page.goto(f"{base}/docs")
    operations = len((await get_json(f"{base}/openapi.json"))["paths"])
    await expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=15_000)
    assert await page.locator(".opblock-summary-path").count() >= operations
    await watched.screenshot("docs")
    await watched.assert_clean()


# The sandbox's magic numbers (tracker.sandbox.faults) beside ordinary ones: a real mix.
DEMO_NUMBERS = {
    "billing": ["0712345601", "0712345602", "0700000510", "0712345603", "0700000502"],
    "otp": ["0712345604", "0712345605", "0712345606", "0700000513", "0700000511", "0712345607"],
}


async def test_an_admin_overview_of_a_real_run(
    make_settings: SettingsFactory,
    database_url: str,
    database: db.Database,
    make_key: Callable[..., Any],
    watched: Watched,
) -> None:
    """Messages of two clients through the real loop: the admin's tiles equal /v1/stats,
    with a per-client table; the screenshot is the README's (docs/dashboard.png)."""
    config = sandbox_config(callback_delay_seconds=0.05, failure_ratio=0.0)
    with loop(make_settings, database_url, config) as (settings, _sandbox):
        base = settings.public_url
        keys = {name: await make_key(name, "send,read") for name in DEMO_NUMBERS}
        admin = await make_key("ops", "admin")
        async with dispatching(settings, database):
            for name, numbers in DEMO_NUMBERS.items():
                for number in numbers * 3:
                    await send(base, keys[name], number)
            page = watched.page
            await log_in(page, base, admin)
            await expect(page.locator("#by-client tbody tr")).to_have_count(2, timeout=20_000)
            await expect(page.locator("[data-tile=queue_depth] .value")).to_have_text(
                "0", timeout=20_000
            )
            await expect(page.locator("[data-tile=delivered] .value")).to_have_text(
                "24", timeout=20_000
            )
        stats = await get_json(f"{base}/v1/stats", admin)
        expected = support.expected_tiles(stats)
        shown = await shown_tiles(page)
        assert {name: shown[name] for name in expected} == expected
        await expect(page.locator("#charts")).to_have_attribute("data-drawn", "25")
        await watched.screenshot("overview-demo")
        await watched.assert_clean()
