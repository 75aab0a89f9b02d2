"""Delivery callbacks over real HTTP: body, timing, the 5-second rule, no retries."""

from __future__ import annotations

import asyncio
import time

import httpx
import uvicorn

from tests.sandbox.support import CONTACT, MakeInProcess, MakeLive, Receiver, SandboxClient
from tracker import server
from tracker.sandbox import SandboxConfig, running_sandbox
from tracker.sandbox import callbacks as sandbox_callbacks
from tracker.sandbox.faults import FAILURES

DELIVERED = "254700000500"


async def test_the_report_has_the_documented_body_and_arrives_after_the_delay(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """The receiver gets exactly the documented Delivered body, callback_delay later."""
    live = make_live(callback_delay_seconds=0.2)
    started = time.monotonic()
    answer = (await live.send(DELIVERED, callback_url=receiver.url())).json()

    received = await receiver.wait_for(1)

    assert [item.body for item in received] == [
        {
            "message_id": answer["message_id"],
            "contact": DELIVERED,
            "status": "Delivered",
            "description": "Message delivered successfully",
        }
    ]
    assert received[0].at - started >= 0.2


async def test_the_receivers_answer_and_latency_are_recorded(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """A 200 is recorded with its latency; stats count it as ok."""
    live = make_live()
    answer = (await live.send(DELIVERED, callback_url=receiver.url())).json()

    stats = await live.settled()
    message = await live.get_json(f"/sandbox/messages/{answer['message_id']}")

    [attempt] = message["callbacks"]
    assert attempt["http_status"] == 200
    assert attempt["ok"] is True
    assert attempt["error"] is None
    assert 0 < attempt["latency_ms"] < 1000
    assert message["final_status"] == "Delivered"
    assert (stats["callbacks_ok"], stats["callbacks_failed"]) == (1, 0)


async def test_a_500_from_the_receiver_is_recorded_and_not_retried(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """The provider does not promise retries, so the sandbox posts a failed report once."""
    receiver.status_code = 500
    live = make_live()
    await live.send(DELIVERED, callback_url=receiver.url())

    stats = await live.settled()
    await asyncio.sleep(0.2)

    assert len(receiver.received) == 1
    [message] = await live.messages()
    assert message["callbacks"][0]["http_status"] == 500
    assert message["callbacks"][0]["ok"] is False
    assert (stats["callbacks_ok"], stats["callbacks_failed"]) == (0, 1)


async def test_a_receiver_slower_than_the_timeout_is_recorded_as_a_timeout(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """A receiver that misses callback_timeout_seconds counts as failed, with no status."""
    receiver.delay_seconds = 0.6
    live = make_live(callback_timeout_seconds=0.2)
    await live.send(DELIVERED, callback_url=receiver.url())

    await live.settled()

    [message] = await live.messages()
    [attempt] = message["callbacks"]
    assert attempt["http_status"] is None
    assert attempt["error"] == "timeout after 0.2 s"
    assert 150 <= attempt["latency_ms"] < 600


async def test_an_unreachable_receiver_is_recorded_as_an_error(make_live: MakeLive) -> None:
    """A refused connection is recorded by its kind, never raised or retried."""
    live = make_live()
    await live.send(DELIVERED, callback_url="http://127.0.0.1:9/nobody-listens")

    await live.settled()

    [message] = await live.messages()
    [attempt] = message["callbacks"]
    assert attempt["http_status"] is None
    assert attempt["error"] == "ConnectError"


async def test_failure_ratio_one_makes_every_report_a_failure(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """With failure_ratio=1 each ordinary message ends in one of the failure statuses."""
    live = make_live(failure_ratio=1.0)
    for _ in range(4):
        await live.send(CONTACT, callback_url=receiver.url())

    received = await receiver.wait_for(4)

    failures = {report.status: report.description for report in FAILURES}
    assert len(received) == 4
    for item in received:
        assert failures[item.body["status"]] == item.body["description"]


async def test_a_send_without_callback_url_posts_nothing(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """No callback_url, no callback: nothing is scheduled."""
    live = make_live()
    await live.send(DELIVERED)

    stats = await live.stats()
    await asyncio.sleep(0.2)

    assert stats["callbacks_pending"] == 0
    assert receiver.received == []


async def test_stopping_the_sandbox_cancels_pending_callbacks(receiver: Receiver) -> None:
    """Shutdown does not wait for (or post) callbacks still scheduled."""
    config = SandboxConfig(callback_delay_seconds=30.0, failure_ratio=0.0)
    started = time.monotonic()
    with running_sandbox(config) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            live = SandboxClient(client)
            await live.send(DELIVERED, callback_url=receiver.url())
            assert (await live.stats())["callbacks_pending"] == 1

    assert time.monotonic() - started < 5
    assert receiver.received == []


async def test_reset_cancels_pending_callbacks(
    make_in_process: MakeInProcess, receiver: Receiver
) -> None:
    """POST /sandbox/reset forgets scheduled callbacks along with everything else."""
    provider = await make_in_process(callback_delay_seconds=0.3)
    await provider.send(DELIVERED, callback_url=receiver.url())

    response = await provider.client.post("/sandbox/reset")
    await asyncio.sleep(0.5)

    assert response.json() == {"reset": True}
    assert provider.sandbox.courier.pending == 0
    assert receiver.received == []


def test_idle_callback_connections_close_before_the_receivers_keep_alive_does() -> None:
    """The sandbox drops an idle connection before `tracker serve` (or uvicorn's default)
    would: reusing one that the server closes at that instant loses the report."""
    receiver_keep_alive = min(
        server.KEEP_ALIVE_SECONDS, uvicorn.Config(app="tracker.app:none").timeout_keep_alive
    )
    assert receiver_keep_alive / 2 > sandbox_callbacks.KEEPALIVE_SECONDS
