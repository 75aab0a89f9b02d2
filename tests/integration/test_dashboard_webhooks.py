"""The dashboard's webhook pages over HTTP: scoping, numbers, pages, retry and recover."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests import dashboard_support as support
from tests.factories import add_message
from tests.integration import webhook_receiver as hooks
from tests.integration import webhook_support
from tracker import clock, db, models
from tracker.app import create_app
from tracker.domain import status
from tracker.services import Services
from tracker.settings import Settings


@pytest.fixture
def app(settings: Settings) -> Starlette:
    return create_app(settings)


@pytest.fixture
async def web(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with support.dashboard_client(app) as client:
        yield client


def services(app: Starlette) -> Services:
    found: Services = app.state.services
    return found


def cell(page: str, row: str, field: str) -> str:
    """The text of ``field``'s cell in the table row ``data-endpoint=row``."""
    found = re.search(
        rf'data-endpoint="{row}".*?data-field="{field}"[^>]*>([^<]*)<', page, re.DOTALL
    )
    assert found is not None, f"no {field} for {row}"
    return found[1].strip()


async def test_the_list_shows_own_endpoints_with_rate_backlog_and_last_error(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """A client's key sees its endpoints only (admin: all), with rate, backlog, last error."""
    mine = str(await hooks.add_endpoint(database, "http://127.0.0.1:9/in?token=s3cret"))
    theirs = str(await hooks.add_endpoint(database, "http://127.0.0.1:9/b", client="billing"))
    for outcome in ("succeeded", "succeeded", "succeeded", "failed"):
        await webhook_support.add_delivery(database, mine, outcome, attempts=1)
    await webhook_support.add_delivery(database, mine, "pending")
    old = clock.utcnow() - dt.timedelta(days=3)  # completed before the 24 h window
    await webhook_support.add_delivery(database, mine, "failed", created_at=old)
    await support.log_in(web, await make_key("app", "read"))
    page = (await web.get("/dashboard/webhooks")).text
    assert mine in page
    assert theirs not in page
    assert "s3cret" not in page  # the query string may carry a token: not shown
    assert cell(page, mine, "success_rate") == "75.0 % of 4"
    assert cell(page, mine, "backlog") == "1"
    assert cell(page, mine, "failed") == "2"
    assert cell(page, mine, "last_error") == "HTTP 500"
    assert cell(page, mine, "state") == "enabled"
    live = (await web.get("/dashboard/webhooks/live")).text  # what htmx polls
    assert live.startswith('<div id="webhooks-live"')
    assert cell(live, mine, "success_rate") == "75.0 % of 4"
    assert theirs not in live
    await support.log_in(web, await make_key("ops", "admin"))
    page = (await web.get("/dashboard/webhooks")).text
    assert mine in page
    assert theirs in page
    assert cell(page, theirs, "success_rate") == "\N{EN DASH}"


async def test_a_disabled_endpoint_shows_why(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """A disabled endpoint says so with its reason, and offers no recover button."""
    endpoint_id = await hooks.add_endpoint(
        database, "http://127.0.0.1:9/in", disabled_at=clock.utcnow(), disabled_reason="failing 5 d"
    )
    await support.log_in(web, await make_key("app", "send,read"))
    listed = (await web.get("/dashboard/webhooks")).text
    assert cell(listed, str(endpoint_id), "state") == "disabled (failing 5 d)"
    page = (await web.get(f"/dashboard/webhooks/{endpoint_id}")).text
    assert "disabled (failing 5 d)" in page
    assert 'id="recover"' not in page


async def test_an_endpoint_page_filters_by_status_and_pages_by_keyset(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Deliveries newest first, 50 a page, the next page by cursor; ?status= filters."""
    endpoint_id = str(await hooks.add_endpoint(database, "http://127.0.0.1:9/in"))
    failed = [
        await webhook_support.add_delivery(database, endpoint_id, "failed") for _ in range(51)
    ]
    succeeded = await webhook_support.add_delivery(database, endpoint_id, "succeeded")
    await support.log_in(web, await make_key("app", "read"))
    first = (await web.get(f"/dashboard/webhooks/{endpoint_id}?status=failed")).text
    shown = [int(n) for n in re.findall(r'<tr data-delivery="(\d+)"', first)]
    assert shown == sorted(failed, reverse=True)[:50]
    assert succeeded not in shown
    assert f'hx-get="/dashboard/webhooks/{endpoint_id}/live?status=failed"' in first
    next_url = re.search(r'class="next" href="([^"]+)"', first)
    assert next_url is not None
    second = (await web.get(next_url[1].replace("&amp;", "&"))).text
    assert [int(n) for n in re.findall(r'<tr data-delivery="(\d+)"', second)] == [min(failed)]
    assert 'class="next"' not in second
    polled = await web.get(f"/dashboard/webhooks/{endpoint_id}/live?status=succeeded")
    assert re.findall(r'<tr data-delivery="(\d+)"', polled.text) == [str(succeeded)]
    everything = (await web.get(f"/dashboard/webhooks/{endpoint_id}")).text
    assert re.findall(r'<tr data-delivery="(\d+)"', everything)[0] == str(succeeded)
    assert (await web.get(f"/dashboard/webhooks/{endpoint_id}?status=lost")).status_code == 400
    assert (await web.get(f"/dashboard/webhooks/{endpoint_id}?cursor=nope")).status_code == 400


async def test_another_clients_endpoint_and_delivery_are_not_found(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Billing's endpoint and delivery are a 404 to app's key, as if they did not exist."""
    theirs = str(await hooks.add_endpoint(database, "http://127.0.0.1:9/b", client="billing"))
    delivery_id = await webhook_support.add_delivery(database, theirs, "failed", attempts=1)
    key = await make_key("app", "send,read")
    await support.log_in(web, key)
    assert (await web.get(f"/dashboard/webhooks/{theirs}")).status_code == 404
    assert (await web.get(f"/dashboard/webhooks/{uuid.uuid4()}")).status_code == 404
    assert (await web.get(f"/dashboard/webhooks/deliveries/{delivery_id}")).status_code == 404
    token = support.csrf((await web.get("/dashboard/webhooks")).text)
    retry = await web.post(
        f"/dashboard/webhooks/deliveries/{delivery_id}/retry", data={"csrf": token}
    )
    assert retry.status_code == 404
    assert (await webhook_support.delivery_row(database, delivery_id)).status == "failed"


async def test_a_delivery_page_shows_each_attempt(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Every attempt with its code, latency, error and response excerpt, oldest first."""
    endpoint_id = str(await hooks.add_endpoint(database, "http://127.0.0.1:9/in"))
    delivery_id = await webhook_support.add_delivery(database, endpoint_id, "failed", attempts=3)
    newer = await webhook_support.add_delivery(database, endpoint_id, "failed", attempts=1)
    await support.log_in(web, await make_key("app", "read"))
    page = (await web.get(f"/dashboard/webhooks/deliveries/{delivery_id}")).text
    assert len(re.findall(r'<tr data-attempt="500"', page)) == 3
    assert "12 ms" in page  # latency 12.5 ms, rounded half to even
    assert "<code>oops</code>" in page
    assert 'id="retry"' not in page  # a read key: no button
    live = await web.get(f"/dashboard/webhooks/deliveries/{newer}/live")
    assert len(re.findall(r'<tr data-attempt="500"', live.text)) == 1


async def test_retry_needs_the_csrf_token_and_the_send_scope(
    app: Starlette, web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Without the token, or with a read key, 403; with both the delivery is pending again
    (schedule restarted, history kept) and the deliverer's doorbell rang."""
    endpoint_id = str(await hooks.add_endpoint(database, "http://127.0.0.1:9/in"))
    delivery_id = await webhook_support.add_delivery(database, endpoint_id, "failed", attempts=2)
    retry_path = f"/dashboard/webhooks/deliveries/{delivery_id}/retry"
    await support.log_in(web, await make_key("reader", "read"))
    assert (await web.post(retry_path, data={"csrf": "x"})).status_code == 403
    await support.log_in(web, await make_key("app", "send,read"))
    page = (await web.get(f"/dashboard/webhooks/deliveries/{delivery_id}")).text
    assert (await web.post(retry_path, data={})).status_code == 403
    assert (await webhook_support.delivery_row(database, delivery_id)).status == "failed"
    services(app).webhook_doorbell.clear()
    answer = await web.post(retry_path, data={"csrf": support.csrf(page)})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/dashboard/webhooks/deliveries/{delivery_id}"
    row = await webhook_support.delivery_row(database, delivery_id)
    assert (row.status, row.attempts) == ("pending", 0)
    assert services(app).webhook_doorbell.rung
    assert len(await hooks.attempts(database, delivery_id)) == 2
    again = await web.post(retry_path, data={"csrf": support.csrf(page)})
    assert again.status_code == 409  # pending: it will be sent


async def test_recover_brings_back_the_windows_failed_deliveries(
    app: Starlette, web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Recover over 24 h: failed deliveries created since then pending, older ones not."""
    endpoint_id = str(await hooks.add_endpoint(database, "http://127.0.0.1:9/in"))
    recent = [await webhook_support.add_delivery(database, endpoint_id, "failed") for _ in range(2)]
    old_at = clock.utcnow() - dt.timedelta(days=2)
    old = await webhook_support.add_delivery(database, endpoint_id, "failed", created_at=old_at)
    done = await webhook_support.add_delivery(database, endpoint_id, "succeeded")
    await support.log_in(web, await make_key("app", "send,read"))
    page = (await web.get(f"/dashboard/webhooks/{endpoint_id}")).text
    recover_path = f"/dashboard/webhooks/{endpoint_id}/recover"
    assert (await web.post(recover_path, data={"window": "24h"})).status_code == 403
    token = support.csrf(page)
    bad = await web.post(recover_path, data={"window": "1y", "csrf": token})
    assert bad.status_code == 400
    services(app).webhook_doorbell.clear()
    answer = await web.post(recover_path, data={"window": "24h", "csrf": token})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/dashboard/webhooks/{endpoint_id}?recovered=2"
    assert services(app).webhook_doorbell.rung
    shown = (await web.get(answer.headers["location"])).text
    assert "2 failed deliveries sent again." in shown
    rows = {
        d: (await webhook_support.delivery_row(database, d)).status for d in (*recent, old, done)
    }
    assert rows == {recent[0]: "pending", recent[1]: "pending", old: "failed", done: "succeeded"}


async def test_the_nav_and_a_messages_timeline_link_to_the_webhook_pages(
    web: httpx.AsyncClient, make_key: Callable[..., Any], database: db.Database
) -> None:
    """Every page's nav has Webhooks; a message's delivery links to its page and endpoint."""
    endpoint_id = await hooks.add_endpoint(database, "http://127.0.0.1:9/in")
    message_id = await add_message(database, status=status.Status.DELIVERED)
    delivery_id = await webhook_support.add_delivery(database, str(endpoint_id), "failed")
    async with database.write() as session:
        row = await session.get(models.WebhookDelivery, delivery_id)
        assert row is not None
        row.message_id = message_id
    await support.log_in(web, await make_key("app", "read"))
    page = (await web.get(f"/dashboard/messages/{message_id}")).text
    assert 'href="/dashboard/webhooks"' in page
    assert f'href="/dashboard/webhooks/deliveries/{delivery_id}"' in page
    assert f'href="/dashboard/webhooks/{endpoint_id}"' in page
    delivery = (await web.get(f"/dashboard/webhooks/deliveries/{delivery_id}")).text
    assert f'href="/dashboard/messages/{message_id}"' in delivery
