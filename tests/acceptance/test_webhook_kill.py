"""kill -9 of a delivering process mid-POST loses no webhook: after a restart it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import standardwebhooks

from tests.factories import add_message
from tests.integration import webhook_receiver as hooks
from tests.integration.test_webhook_outbox import apply_reports, receipt
from tests.processes import Running, free_port, started, stop
from tracker import db


def environment(database_url: str, tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_DATA_DIR": str(tmp_path / "data"),
        "TRACKER_KIMISMS_BASE_URL": "http://127.0.0.1:9",  # nothing is sent to KIMISMS here
        "TRACKER_KIMISMS_CLIENT_ID": "kill-test",
        "TRACKER_KIMISMS_CLIENT_SECRET": "kill-test-secret",
        "TRACKER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TRACKER_WEBHOOK_ALLOWED_NETWORKS": hooks.ALLOWED,
        "TRACKER_WEBHOOK_TIMEOUT_SECONDS": "5",  # a lease of 15 s
        "TRACKER_LOG_FORMAT": "json",
    }


async def start(
    backend: str, env: dict[str, str], port: int
) -> tuple[Running, contextlib.ExitStack]:
    """SQLite: ``serve`` (the deliverer in-process); PostgreSQL: ``tracker worker``."""
    if backend == "sqlite":
        command = started(
            "serve", "--port", str(port), env=env, ready_url=f"http://127.0.0.1:{port}/healthz"
        )
    else:
        command = started("worker", env=env)
    stack = contextlib.ExitStack()
    # In a thread: the readiness wait blocks, and the receiver lives on this loop.
    running = await asyncio.to_thread(stack.enter_context, command)
    return running, stack


async def test_a_delivery_killed_mid_post_arrives_after_the_restart(
    backend: str, database: db.Database, database_url: str, tmp_path: Path
) -> None:
    """SIGKILL while the receiver holds the POST open; restarted, the lease runs out and the
    same webhook (same webhook-id) arrives and is recorded succeeded."""
    release = asyncio.Event()

    async def hold_the_first(request: hooks.Request) -> hooks.Reply:
        if len(receiver.requests) == 1:
            await release.wait()
        return hooks.Reply()

    message_id = await add_message(database)
    port = free_port()
    env = environment(database_url, tmp_path, port)
    async with hooks.receiving(hold_the_first) as receiver:
        await hooks.add_endpoint(database, receiver.url())
        await apply_reports(database, receipt(message_id))
        first, stack = await start(backend, env, port)
        with stack:
            await receiver.wait_for(1, within=30)
            await asyncio.to_thread(stop, first.process, signal.SIGKILL)
        (delivery,) = await hooks.pending_deliveries(database)
        assert delivery.lease_until is not None  # claimed, never recorded
        _second, stack = await start(backend, env, port)
        with stack:
            await receiver.wait_for(2, within=60)
            assert await hooks.settled(database, delivery.id, within=30) == "succeeded"
        release.set()
    held, redone = receiver.requests[:2]
    assert held.headers["webhook-id"] == redone.headers["webhook-id"] == delivery.event_id
    payload = standardwebhooks.Webhook(hooks.SECRET).verify(redone.body, redone.headers)
    assert payload["data"]["id"] == str(message_id)
    found = await hooks.delivery(database, delivery.id)
    assert found.attempts == 1  # the killed attempt left no record; the redone one did


async def test_serve_with_no_webhooks_leaves_deliveries_to_a_worker(
    database: db.Database, database_url: str, tmp_path: Path
) -> None:
    """``serve --no-webhooks`` applies the report but POSTs nothing; a worker then delivers."""
    message_id = await add_message(database)
    port = free_port()
    env = environment(database_url, tmp_path, port)
    ready = f"http://127.0.0.1:{port}/healthz"
    async with hooks.receiving() as receiver:
        await hooks.add_endpoint(database, receiver.url())
        serving = contextlib.ExitStack()
        command = started("serve", "--no-webhooks", "--port", str(port), env=env, ready_url=ready)
        await asyncio.to_thread(serving.enter_context, command)
        with serving:
            await apply_reports(database, receipt(message_id))
            await asyncio.sleep(3)  # beyond the deliverer's 2 s fallback poll
            assert receiver.requests == []
            (delivery,) = await hooks.pending_deliveries(database)
            working = contextlib.ExitStack()
            await asyncio.to_thread(working.enter_context, started("worker", env=env))
            with working:
                await receiver.wait_for(1, within=30)
                assert await hooks.settled(database, delivery.id, within=30) == "succeeded"
