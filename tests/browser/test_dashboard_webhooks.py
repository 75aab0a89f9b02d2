"""The webhook pages in a real Chromium: a failing receiver's endpoint, its delivery's
attempts, the retry button, and the receiver's later success shown without a reload."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from tests.browser.conftest import Watched
from tests.browser.test_dashboard import log_in, send
from tests.conftest import SettingsFactory
from tests.integration import webhook_receiver as hooks
from tests.processes import free_port
from tracker import db, models
from tracker.app import create_app
from tracker.sandbox.server import running_app
from tracker.settings import Settings


@pytest.fixture
def tracker(make_settings: SettingsFactory, database_url: str) -> Iterator[Settings]:
    """The tracker over HTTP on loopback with its webhook deliverer; two attempts a delivery."""
    port = free_port()
    settings = make_settings(
        database_url=database_url,
        public_url=f"http://127.0.0.1:{port}",
        webhook_allowed_networks=hooks.ALLOWED,
        webhook_retry_schedule="0,0",
    )
    with running_app(create_app(settings, run_deliverer=True), port=port):
        yield settings


class Flaky:
    """A receiver's answer: 500 with a body until ``healthy``, then 200."""

    def __init__(self) -> None:
        self.healthy = False

    async def __call__(self, _request: hooks.Request) -> hooks.Reply:
        if self.healthy:
            return hooks.Reply(200, body=b"thanks")
        return hooks.Reply(500, body=b"receiver down for maintenance")


async def only_delivery(database: db.Database, endpoint_id: object) -> int:
    async with database.read() as session:
        found = await session.scalar(
            sa.select(models.WebhookDelivery.id).where(
                models.WebhookDelivery.endpoint_id == endpoint_id
            )
        )
    assert found is not None
    return int(found)


async def cancel(base: str, key: str, message_id: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        answer = await client.post(
            f"/v1/messages/{message_id}/cancel", headers={"Authorization": f"Bearer {key}"}
        )
    assert answer.status_code == 200, answer.text


async def test_a_failed_delivery_is_seen_opened_and_retried_to_success(
    tracker: Settings, database: db.Database, make_key: Callable[..., Any], watched: Watched
) -> None:
    """The endpoint's failure and last error appear on the open list; the delivery's two
    500s with their excerpt; retry, and the page shows the now-healthy receiver's success."""
    base = tracker.public_url
    answer = Flaky()
    async with hooks.receiving(answer) as receiver:
        endpoint_id = await hooks.add_endpoint(
            database, receiver.url(), events=("message.cancelled",)
        )
        key = await make_key("app", "send,read")
        page = watched.page
        await log_in(page, base, key)
        await page.click("nav >> text=Webhooks")
        row = page.locator(f"tr[data-endpoint='{endpoint_id}']")
        await expect(row.locator("[data-field=success_rate]")).to_have_text("\N{EN DASH}")
        await page.evaluate("window.__same_document = true")
        message_id = await send(base, key)
        await cancel(base, key, message_id)  # the cancel's delivery goes to the receiver
        await receiver.wait_for(2)
        delivery_id = await only_delivery(database, endpoint_id)
        assert await hooks.settled(database, delivery_id) == "failed"
        await expect(row.locator("[data-field=last_error]")).to_have_text(
            "HTTP 500", timeout=20_000
        )
        assert await page.evaluate("window.__same_document === true")  # no reload: htmx
        await expect(row.locator("[data-field=success_rate]")).to_have_text("0.0 % of 1")
        await expect(row.locator("[data-field=failed]")).to_have_text("1")
        await expect(row.locator("[data-field=backlog]")).to_have_text("0")
        await watched.screenshot("webhooks")
        await row.locator("a").first.click()
        await expect(page).to_have_url(f"{base}/dashboard/webhooks/{endpoint_id}")
        delivery_row = page.locator(f"tr[data-delivery='{delivery_id}']")
        await expect(delivery_row.locator("td.status")).to_have_text("failed")
        await watched.screenshot("webhook-endpoint")
        await delivery_row.locator("a").first.click()
        await expect(page).to_have_url(f"{base}/dashboard/webhooks/deliveries/{delivery_id}")
        attempts = page.locator("#attempts tr[data-attempt]")
        await expect(attempts).to_have_count(2)
        await expect(attempts.first).to_contain_text("receiver down for maintenance")
        await expect(page.locator("[data-field=status]")).to_have_text("failed")
        answer.healthy = True
        await page.click("#retry")
        await expect(page).to_have_url(f"{base}/dashboard/webhooks/deliveries/{delivery_id}")
        await page.evaluate("window.__same_document = true")
        await expect(page.locator("[data-field=status]")).to_have_text("succeeded", timeout=20_000)
        assert await page.evaluate("window.__same_document === true")  # no reload: htmx
        await expect(attempts).to_have_count(3)
        await expect(page.locator("#attempts tr[data-attempt='200']")).to_contain_text("thanks")
        await expect(page.locator("#retry")).to_have_count(1)  # sent again only if asked
        assert len(receiver.requests) == 3
        await watched.screenshot("webhook-delivery-retried")
        await page.goto(f"{base}/dashboard/messages/{message_id}")
        await page.click("#webhook-deliveries a.delivery-link")
        await expect(page).to_have_url(
            re.compile(rf"/dashboard/webhooks/deliveries/{delivery_id}$")
        )
        await watched.assert_clean()
