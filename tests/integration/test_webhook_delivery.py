"""The deliverer against real receivers on 127.0.0.1: signed, retried, disabling, fair."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
import standardwebhooks
from structlog import testing

from tests.conftest import SettingsFactory
from tests.factories import add_message
from tests.integration import webhook_receiver as hooks
from tests.integration.test_webhook_outbox import apply_reports, receipt
from tracker import clock, db, models
from tracker.settings import Settings


@pytest.fixture
def hook_settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return make_settings(
        database_url=database_url,
        webhook_allowed_networks=hooks.ALLOWED,
        webhook_retry_schedule="0,1,1",
        webhook_timeout_seconds=5,
    )


def answering(*replies: hooks.Reply) -> hooks.Answer:
    """Answer each request with the next reply; the last one from then on."""
    queue = list(replies)

    async def answer(_request: hooks.Request) -> hooks.Reply:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return answer


def verify(secret: str, request: hooks.Request) -> Any:
    return standardwebhooks.Webhook(secret).verify(request.body, request.headers)


async def test_a_status_change_arrives_signed_and_verifies_with_standardwebhooks(
    database: db.Database, hook_settings: Settings
) -> None:
    """A delivery report's event reaches the receiver signed; standardwebhooks verifies it."""
    message_id = await add_message(database)
    async with hooks.receiving() as receiver, hooks.delivering(hook_settings, database):
        await hooks.add_endpoint(database, receiver.url())
        await apply_reports(database, receipt(message_id))
        (request,) = await receiver.wait_for(1)
    payload = verify(hooks.SECRET, request)
    assert payload["type"] == "message.delivered"
    data = payload["data"]
    assert data["id"] == str(message_id)
    assert (data["status"], data["previous_status"]) == ("delivered", "pending")
    assert data["to"] == "254712345678"
    assert data["priority"] == "normal"
    assert isinstance(data["sequence"], int)
    assert data["created_at"].endswith("Z")
    assert "events" not in data
    assert "body" not in data
    assert request.headers["webhook-id"].startswith(f"msg_{message_id.hex}_")


async def test_the_delivery_and_its_attempt_are_recorded_as_succeeded(
    database: db.Database, hook_settings: Settings
) -> None:
    """A 2xx makes the delivery succeeded with one attempt row (status, latency, excerpt)."""
    reply = hooks.Reply(body=b"thanks")
    async with hooks.receiving(answering(reply)) as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url())
        delivery_id = await hooks.add_test_delivery(database, endpoint_id, "hello")
        async with hooks.delivering(hook_settings, database):
            assert await hooks.settled(database, delivery_id) == "succeeded"
    (request,) = receiver.requests
    assert json.loads(verify(hooks.SECRET, request) and request.body)["data"] == {"note": "hello"}
    found = await hooks.delivery(database, delivery_id)
    assert (found.attempts, found.last_status_code, found.lease_until) == (1, 200, None)
    assert found.completed_at is not None
    (attempt,) = await hooks.attempts(database, delivery_id)
    assert (attempt.status_code, attempt.error, attempt.response_excerpt) == (200, None, "thanks")
    assert attempt.latency_ms >= 0


async def test_during_rotation_two_signatures_and_either_secret_verifies(
    database: db.Database, hook_settings: Settings
) -> None:
    """While the previous secret is in its grace period both sign: two v1 entries."""
    until = clock.utcnow() + dt.timedelta(hours=1)
    async with hooks.receiving() as receiver, hooks.delivering(hook_settings, database):
        endpoint_id = await hooks.add_endpoint(
            database,
            receiver.url(),
            previous_secret=hooks.OTHER_SECRET,
            previous_secret_until=until,
        )
        await hooks.add_test_delivery(database, endpoint_id)
        (request,) = await receiver.wait_for(1)
    entries = request.headers["webhook-signature"].split(" ")
    assert [entry.split(",")[0] for entry in entries] == ["v1", "v1"]
    for secret, entry in ((hooks.SECRET, entries[0]), (hooks.OTHER_SECRET, entries[1])):
        alone = {**request.headers, "webhook-signature": entry}
        assert standardwebhooks.Webhook(secret).verify(request.body, alone)


async def test_failures_are_retried_on_the_schedule_with_the_same_webhook_id(
    database: db.Database, hook_settings: Settings
) -> None:
    """500, timeout-free 502, then 200: three attempts a schedule step apart, one webhook-id."""
    answer = answering(hooks.Reply(500), hooks.Reply(502), hooks.Reply(200))
    async with hooks.receiving(answer) as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url())
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        async with hooks.delivering(hook_settings, database):
            assert await hooks.settled(database, delivery_id) == "succeeded"
    first, second, third = receiver.requests
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert second.at - first.at >= 0.85  # the schedule's 1 s, less its 10 % jitter
    assert third.at - second.at >= 0.85
    for request in receiver.requests:
        verify(hooks.SECRET, request)
    rows = await hooks.attempts(database, delivery_id)
    assert [(a.status_code, a.error) for a in rows] == [
        (500, "HTTP 500"),
        (502, "HTTP 502"),
        (200, None),
    ]
    assert (await hooks.endpoint(database, endpoint_id)).failing_since is None


async def test_a_delivery_fails_when_its_schedule_runs_out(
    database: db.Database, make_settings: SettingsFactory, database_url: str
) -> None:
    """Always 500 with the schedule 0,0: two attempts, then failed; the endpoint is failing."""
    settings = make_settings(
        database_url=database_url,
        webhook_allowed_networks=hooks.ALLOWED,
        webhook_retry_schedule="0,0",
    )
    async with hooks.receiving(answering(hooks.Reply(500))) as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url())
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        async with hooks.delivering(settings, database):
            assert await hooks.settled(database, delivery_id) == "failed"
    assert len(receiver.requests) == 2
    found = await hooks.delivery(database, delivery_id)
    assert (found.attempts, found.last_status_code, found.next_attempt_at) == (2, 500, None)
    endpoint = await hooks.endpoint(database, endpoint_id)
    assert endpoint.failing_since is not None
    assert endpoint.disabled_at is None


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_on_429_and_503(
    database: db.Database, make_settings: SettingsFactory, database_url: str, status: int
) -> None:
    """The schedule says at once, the receiver says 2 s: the retry waits the 2 s."""
    settings = make_settings(
        database_url=database_url,
        webhook_allowed_networks=hooks.ALLOWED,
        webhook_retry_schedule="0,0",
    )
    answer = answering(hooks.Reply(status, {"retry-after": "2"}), hooks.Reply(200))
    async with hooks.receiving(answer) as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url())
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        async with hooks.delivering(settings, database):
            assert await hooks.settled(database, delivery_id) == "succeeded"
    first, second = receiver.requests
    assert second.at - first.at >= 1.9


async def test_retry_after_is_ignored_on_other_statuses(
    database: db.Database, make_settings: SettingsFactory, database_url: str
) -> None:
    """A 500's Retry-After does not delay the schedule's retry at once (0 s)."""
    settings = make_settings(
        database_url=database_url,
        webhook_allowed_networks=hooks.ALLOWED,
        webhook_retry_schedule="0,0",
    )
    answer = answering(hooks.Reply(500, {"retry-after": "3600"}), hooks.Reply(200))
    async with hooks.receiving(answer) as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url())
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        async with hooks.delivering(settings, database):
            assert await hooks.settled(database, delivery_id) == "succeeded"
    assert len(receiver.requests) == 2


async def test_a_410_disables_the_endpoint_at_once_and_fails_its_other_deliveries(
    database: db.Database, hook_settings: Settings
) -> None:
    """410 Gone: no retry, the endpoint is disabled, its waiting delivery is failed too."""
    async with hooks.receiving(answering(hooks.Reply(410))) as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url())
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        later = await hooks.add_test_delivery(database, endpoint_id)
        async with database.write() as session:  # due in an hour: not attempted first
            row = await session.get(models.WebhookDelivery, later)
            assert row is not None
            row.next_attempt_at = clock.utcnow() + dt.timedelta(hours=1)
        with testing.capture_logs() as logs:
            async with hooks.delivering(hook_settings, database):
                assert await hooks.settled(database, delivery_id) == "failed"
    assert len(receiver.requests) == 1
    endpoint = await hooks.endpoint(database, endpoint_id)
    assert endpoint.disabled_at is not None
    assert "410" in (endpoint.disabled_reason or "")
    waiting = await hooks.delivery(database, later)
    assert (waiting.status, waiting.last_error) == ("failed", "endpoint disabled")
    warned = [e for e in logs if e["event"] == "webhook_endpoint_disabled"]
    assert [e["endpoint_id"] for e in warned] == [str(endpoint_id)]
    assert hooks.SECRET not in repr(logs)


async def test_an_endpoint_failing_past_the_window_is_disabled(
    database: db.Database, make_settings: SettingsFactory, database_url: str
) -> None:
    """Failing since longer than TRACKER_WEBHOOK_DISABLE_AFTER: the next failure disables."""
    settings = make_settings(
        database_url=database_url,
        webhook_allowed_networks=hooks.ALLOWED,
        webhook_disable_after=60,
    )
    since = clock.utcnow() - dt.timedelta(seconds=61)
    async with hooks.receiving(answering(hooks.Reply(500))) as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url(), failing_since=since)
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        async with hooks.delivering(settings, database):
            assert await hooks.settled(database, delivery_id) == "failed"
    endpoint = await hooks.endpoint(database, endpoint_id)
    assert endpoint.disabled_at is not None
    assert "TRACKER_WEBHOOK_DISABLE_AFTER" in (endpoint.disabled_reason or "")
    assert (await hooks.delivery(database, delivery_id)).last_error == "endpoint disabled"


async def test_a_failure_inside_the_window_does_not_disable(
    database: db.Database, make_settings: SettingsFactory, database_url: str
) -> None:
    """Failing for less than the window: retried, the endpoint stays enabled."""
    settings = make_settings(
        database_url=database_url,
        webhook_allowed_networks=hooks.ALLOWED,
        webhook_disable_after=3600,
        webhook_retry_schedule="0",
    )
    since = clock.utcnow() - dt.timedelta(seconds=3000)
    async with hooks.receiving(answering(hooks.Reply(500))) as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url(), failing_since=since)
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        async with hooks.delivering(settings, database):
            assert await hooks.settled(database, delivery_id) == "failed"
    endpoint = await hooks.endpoint(database, endpoint_id)
    assert endpoint.disabled_at is None
    assert endpoint.failing_since == since


async def test_a_slow_endpoint_does_not_delay_a_fast_one(
    database: db.Database, hook_settings: Settings
) -> None:
    """Six deliveries held open at a slow endpoint: four in flight, and the fast one arrives."""
    release = asyncio.Event()

    async def held(_request: hooks.Request) -> hooks.Reply:
        await release.wait()
        return hooks.Reply()

    async with hooks.receiving(held) as slow, hooks.receiving() as fast:
        slow_id = await hooks.add_endpoint(database, slow.url())
        fast_id = await hooks.add_endpoint(database, fast.url())
        for n in range(6):
            await hooks.add_test_delivery(database, slow_id, f"slow {n}")
        async with hooks.delivering(hook_settings, database):
            await slow.wait_for(4)
            fast_delivery = await hooks.add_test_delivery(database, fast_id, "fast")
            (request,) = await fast.wait_for(1)
            assert json.loads(request.body)["data"] == {"note": "fast"}
            assert len(slow.requests) == 4  # the per-endpoint limit, all still held
            assert await hooks.settled(database, fast_delivery) == "succeeded"
            release.set()
            await slow.wait_for(6)


async def test_two_deliverers_never_deliver_one_delivery_twice(
    database: db.Database, hook_settings: Settings, database_url: str
) -> None:
    """Two deliverers (own connections) share 120 deliveries: each arrives exactly once."""
    async with hooks.receiving() as receiver:
        endpoints = [await hooks.add_endpoint(database, receiver.url(f"/{n}")) for n in range(4)]
        ids = [
            await hooks.add_test_delivery(database, endpoints[n % 4], str(n)) for n in range(120)
        ]
        other = db.Database(database_url)
        try:
            async with (
                hooks.delivering(hook_settings, database),
                hooks.delivering(hook_settings, other),
            ):
                await receiver.wait_for(120)
                for delivery_id in ids:
                    assert await hooks.settled(database, delivery_id) == "succeeded"
        finally:
            await other.dispose()
    webhook_ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(webhook_ids) == len(set(webhook_ids)) == 120


async def test_a_refused_destination_is_a_failed_attempt_not_a_connection(
    database: db.Database, make_settings: SettingsFactory, database_url: str
) -> None:
    """Loopback not allowed: the connect-time vetting refuses, the attempt records why."""
    settings = make_settings(database_url=database_url, webhook_retry_schedule="0")
    async with hooks.receiving() as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url())
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        async with hooks.delivering(settings, database):
            assert await hooks.settled(database, delivery_id) == "failed"
    assert receiver.requests == []
    (attempt,) = await hooks.attempts(database, delivery_id)
    assert attempt.status_code is None
    assert (attempt.error or "").startswith("destination refused")


async def test_a_disabled_endpoint_gets_nothing(
    database: db.Database, hook_settings: Settings
) -> None:
    """A pending delivery of a disabled endpoint is never claimed."""
    async with hooks.receiving() as receiver:
        endpoint_id = await hooks.add_endpoint(database, receiver.url(), disabled_at=clock.utcnow())
        delivery_id = await hooks.add_test_delivery(database, endpoint_id)
        enabled = await hooks.add_endpoint(database, receiver.url("/on"))
        control = await hooks.add_test_delivery(database, enabled)
        async with hooks.delivering(hook_settings, database):
            assert await hooks.settled(database, control) == "succeeded"
    assert [r.path for r in receiver.requests] == ["/on"]
    assert (await hooks.delivery(database, delivery_id)).status == "pending"
