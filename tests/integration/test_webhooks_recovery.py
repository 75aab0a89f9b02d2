"""Webhook deliveries for operators: the list with attempts, retry, recover, the test event."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from tests.conftest import SettingsFactory, running
from tests.integration import webhook_support as support
from tests.integration.send_support import Headers, bearer
from tracker import clock, db, models, wakeup
from tracker.app import create_app
from tracker.settings import Settings

DELIVERY_FIELDS = {
    "id", "event_id", "event_type", "message_id", "status", "attempts", "next_attempt_at",
    "created_at", "completed_at", "last_status_code", "last_error",
}  # fmt: skip
ATTEMPT_FIELDS = {"attempted_at", "status_code", "latency_ms", "error", "response_excerpt"}


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return make_settings(database_url=database_url, webhook_allowed_networks="127.0.0.1/32")


@pytest.fixture
def app(settings: Settings) -> Starlette:
    return create_app(settings)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app) as http:
        yield http


@pytest.fixture
async def app_key(make_key: Callable[..., Any]) -> Headers:
    return bearer(await make_key("app", "send,read"))


@pytest.fixture
async def endpoint(client: httpx.AsyncClient, app_key: Headers) -> str:
    """The id of an enabled endpoint of client ``app``."""
    created = await support.create(client, app_key)
    endpoint_id: str = created["id"]
    return endpoint_id


async def disable(client: httpx.AsyncClient, headers: Headers, endpoint_id: str) -> None:
    response = await client.patch(
        f"/v1/webhooks/{endpoint_id}", json={"enabled": False}, headers=headers
    )
    assert response.status_code == 200, response.text


# --- the list ------------------------------------------------------------------


async def test_deliveries_list_by_status_with_every_attempt(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database, endpoint: str
) -> None:
    """status=failed lists only failed deliveries, each with its attempts oldest first."""
    failed = await support.add_delivery(database, endpoint, "failed", attempts=2)
    await support.add_delivery(database, endpoint, "succeeded", attempts=1)
    await support.add_delivery(database, endpoint, "pending")
    response = await client.get(
        f"/v1/webhooks/{endpoint}/deliveries", params={"status": "failed"}, headers=app_key
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    [listed] = page["deliveries"]
    assert set(listed) == DELIVERY_FIELDS | {"attempt_history"}
    assert (listed["id"], listed["status"], listed["attempts"]) == (failed, "failed", 2)
    assert (listed["last_status_code"], listed["last_error"]) == (500, "HTTP 500")
    history = listed["attempt_history"]
    assert [set(a) for a in history] == [ATTEMPT_FIELDS] * 2
    assert history[0]["attempted_at"] < history[1]["attempted_at"]
    assert (history[0]["status_code"], history[0]["latency_ms"]) == (500, 12.5)
    every = await client.get(f"/v1/webhooks/{endpoint}/deliveries", headers=app_key)
    assert [d["status"] for d in every.json()["deliveries"]] == ["pending", "succeeded", "failed"]


async def test_deliveries_page_by_cursor_without_gaps_or_repeats(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database, endpoint: str
) -> None:
    """limit=2 over five deliveries: three pages, newest first, each delivery once."""
    made = [await support.add_delivery(database, endpoint, "failed") for _ in range(5)]
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    for _page in range(3):
        response = await client.get(
            f"/v1/webhooks/{endpoint}/deliveries", params=params, headers=app_key
        )
        assert response.status_code == 200, response.text
        seen += [d["id"] for d in response.json()["deliveries"]]
        params["cursor"] = response.json()["next_cursor"]
    assert seen == sorted(made, reverse=True)
    assert params["cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=bm9wZQ", "cursor"),
        ("status=failed&status=pending", "status"),
        ("colour=red", "colour"),
    ],
)
async def test_bad_list_parameters_are_a_400_naming_them(
    client: httpx.AsyncClient, app_key: Headers, endpoint: str, query: str, field: str
) -> None:
    """An unknown status, a limit out of range, a foreign cursor, a repeat: 400 by name."""
    response = await client.get(f"/v1/webhooks/{endpoint}/deliveries?{query}", headers=app_key)
    assert response.status_code == 400, response.text
    assert list(response.json()["errors"]) == [field]


async def test_the_endpoint_shows_its_backlog_failures_and_last_attempt(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database, endpoint: str
) -> None:
    """GET /v1/webhooks/{id} counts pending and failed deliveries and names the last attempt."""
    await support.add_delivery(database, endpoint, "pending")
    await support.add_delivery(database, endpoint, "pending")
    await support.add_delivery(database, endpoint, "failed", attempts=3)
    shown = (await client.get(f"/v1/webhooks/{endpoint}", headers=app_key)).json()
    counts = shown["deliveries"]
    assert (counts["pending"], counts["failed"]) == (2, 1)
    assert (counts["last_status_code"], counts["last_error"]) == (500, "HTTP 500")
    assert counts["last_attempt_at"] is not None


# --- retry ---------------------------------------------------------------------


async def test_retry_makes_a_failed_delivery_due_now_and_keeps_its_history(
    app: Starlette,
    client: httpx.AsyncClient,
    app_key: Headers,
    database: db.Database,
    endpoint: str,
) -> None:
    """200: pending, attempts 0, due now, not completed; its attempts stay; the bell rings."""
    failed = await support.add_delivery(database, endpoint, "failed", attempts=2)
    bell = support.doorbell_of(app)
    assert not bell.rung
    before = clock.utcnow()
    response = await client.post(f"/v1/webhooks/deliveries/{failed}/retry", headers=app_key)
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["attempts"]) == ("pending", 0)
    row = await support.delivery_row(database, failed)
    assert (row.status, row.attempts, row.completed_at, row.lease_until) == (
        "pending", 0, None, None,
    )  # fmt: skip
    assert row.next_attempt_at is not None
    assert row.next_attempt_at >= before
    assert bell.rung
    async with database.read() as session:
        kept = await session.scalar(select(func.count()).select_from(models.WebhookAttempt))
    assert kept == 2


async def test_retry_redelivers_a_succeeded_one_and_refuses_a_pending_one(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database, endpoint: str
) -> None:
    """A succeeded delivery may be sent again; one still pending is 409, unchanged."""
    done = await support.add_delivery(database, endpoint, "succeeded", attempts=1)
    again = await client.post(f"/v1/webhooks/deliveries/{done}/retry", headers=app_key)
    assert again.status_code == 200, again.text
    assert (await support.delivery_row(database, done)).status == "pending"
    refused = await client.post(f"/v1/webhooks/deliveries/{done}/retry", headers=app_key)
    assert refused.status_code == 409
    assert "pending" in refused.json()["detail"]


async def test_retry_is_404_for_another_client_and_409_while_disabled(
    client: httpx.AsyncClient,
    app_key: Headers,
    make_key: Callable[..., Any],
    database: db.Database,
    endpoint: str,
) -> None:
    """Another client's delivery is not found; a disabled endpoint's is refused until enabled."""
    failed = await support.add_delivery(database, endpoint, "failed")
    other = bearer(await make_key("other", "send,read"))
    hidden = await client.post(f"/v1/webhooks/deliveries/{failed}/retry", headers=other)
    assert hidden.status_code == 404
    await disable(client, app_key, endpoint)
    refused = await client.post(f"/v1/webhooks/deliveries/{failed}/retry", headers=app_key)
    assert refused.status_code == 409
    assert "enable it first" in refused.json()["detail"]
    assert (await support.delivery_row(database, failed)).status == "failed"


# --- recover -------------------------------------------------------------------


async def test_recover_brings_back_every_failed_delivery_since_the_time(
    app: Starlette,
    client: httpx.AsyncClient,
    app_key: Headers,
    database: db.Database,
    endpoint: str,
) -> None:
    """Failed since TIME: pending again, counted; older failures and other statuses stay."""
    now = clock.utcnow()
    old = await support.add_delivery(
        database, endpoint, "failed", created_at=now - dt.timedelta(hours=2)
    )
    recent = [await support.add_delivery(database, endpoint, "failed") for _ in range(2)]
    done = await support.add_delivery(database, endpoint, "succeeded")
    since = (now - dt.timedelta(hours=1)).isoformat()
    response = await client.post(
        f"/v1/webhooks/{endpoint}/recover", params={"since": since}, headers=app_key
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"recovered": 2}
    assert [(await support.delivery_row(database, d)).status for d in recent] == ["pending"] * 2
    assert (await support.delivery_row(database, old)).status == "failed"
    assert (await support.delivery_row(database, done)).status == "succeeded"
    assert support.doorbell_of(app).rung


async def test_recover_reads_a_plus_lost_in_the_query_string(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database, endpoint: str
) -> None:
    """An offset whose '+' arrived as a space is still read as that offset."""
    await support.add_delivery(database, endpoint, "failed")
    since = (clock.utcnow() - dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=3)))
    raw = since.replace(microsecond=0).isoformat().replace("+", " ")
    response = await client.post(f"/v1/webhooks/{endpoint}/recover?since={raw}", headers=app_key)
    assert response.status_code == 200, response.text
    assert response.json() == {"recovered": 1}


@pytest.mark.parametrize(
    "query",
    ["", "since=2026-01-01T00:00:00", "since=1767225600", "since=yesterday", "since=&since="],
)
async def test_recover_needs_an_aware_iso_time(
    client: httpx.AsyncClient, app_key: Headers, endpoint: str, query: str
) -> None:
    """since missing, naive, a number, not a time, or repeated: 400 on ``since``."""
    response = await client.post(f"/v1/webhooks/{endpoint}/recover?{query}", headers=app_key)
    assert response.status_code == 400, response.text
    assert list(response.json()["errors"]) == ["since"]


async def test_recover_is_refused_while_the_endpoint_is_disabled(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database, endpoint: str
) -> None:
    """409 naming what to do; the failed deliveries stay failed until it is enabled."""
    failed = await support.add_delivery(database, endpoint, "failed")
    await disable(client, app_key, endpoint)
    params = {"since": "2020-01-01T00:00:00Z"}
    refused = await client.post(f"/v1/webhooks/{endpoint}/recover", params=params, headers=app_key)
    assert refused.status_code == 409
    assert (await support.delivery_row(database, failed)).status == "failed"
    enabled = await client.patch(
        f"/v1/webhooks/{endpoint}", json={"enabled": True}, headers=app_key
    )
    assert enabled.status_code == 200
    recovered = await client.post(
        f"/v1/webhooks/{endpoint}/recover", params=params, headers=app_key
    )
    assert recovered.json() == {"recovered": 1}


# --- the test event ------------------------------------------------------------


async def test_the_test_event_queues_one_webhook_test_delivery(
    app: Starlette,
    client: httpx.AsyncClient,
    app_key: Headers,
    database: db.Database,
    endpoint: str,
) -> None:
    """202 with a pending webhook.test delivery: no message, its own webhook-id, due now."""
    response = await client.post(f"/v1/webhooks/{endpoint}/test", headers=app_key)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert set(queued) == DELIVERY_FIELDS
    row = await support.delivery_row(database, queued["id"])
    assert (row.event_type, row.message_id, row.sequence, row.status) == (
        "webhook.test", None, None, "pending",
    )  # fmt: skip
    assert row.event_id.startswith("msg_")
    assert row.data["endpoint_id"] == endpoint
    assert "test event" in row.data["note"]
    assert row.next_attempt_at is not None
    assert support.doorbell_of(app).rung


async def test_the_test_event_is_refused_to_a_disabled_endpoint(
    client: httpx.AsyncClient, app_key: Headers, database: db.Database, endpoint: str
) -> None:
    """409, and nothing is queued."""
    await disable(client, app_key, endpoint)
    refused = await client.post(f"/v1/webhooks/{endpoint}/test", headers=app_key)
    assert refused.status_code == 409
    async with database.read() as session:
        queued = await session.scalar(select(func.count()).select_from(models.WebhookDelivery))
    assert queued == 0


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_retry_and_the_test_event_notify_other_processes(
    client: httpx.AsyncClient,
    app_key: Headers,
    database: db.Database,
    endpoint: str,
) -> None:
    """On PostgreSQL each commit that queues deliveries sends NOTIFY tracker_webhooks."""
    failed = await support.add_delivery(database, endpoint, "failed")
    bell = wakeup.Doorbell()
    listener = wakeup.Listener(wakeup.dsn_of(database), bell, channel=wakeup.WEBHOOKS_CHANNEL)
    stopping = asyncio.Event()
    task = asyncio.create_task(listener.run(stopping))
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        await asyncio.wait_for(bell.wait(10, stopping), 10)  # the ring on connecting
        for path in (f"/v1/webhooks/deliveries/{failed}/retry", f"/v1/webhooks/{endpoint}/test"):
            bell.clear()
            response = await client.post(path, headers=app_key)
            assert response.status_code in {200, 202}, response.text
            await bell.wait(10, stopping)
            assert bell.rung, path
    finally:
        stopping.set()
        await task
