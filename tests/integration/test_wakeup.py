"""Wake at once (issue 14): the doorbell in-process, NOTIFY and its listener on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from tests.conftest import SettingsFactory, running
from tests.provider_loop import loop, sandbox_config, sandbox_sends
from tracker import auth, clock, db, wakeup
from tracker.app import create_app

SLOW_POLL = 60.0  # far longer than the test waits: only a wake-up can send in time
WITHIN = 10.0  # generous: a woken dispatcher sends in milliseconds
SETTLE = 1.5  # the dispatcher leads, looks once and goes idle


async def sent_within(sandbox_url: str, message_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sends = await asyncio.to_thread(sandbox_sends, sandbox_url)
        if any(send["idempotency_key"] == message_id for send in sends):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_message_accepted_in_serve_wakes_its_idle_dispatcher_at_once(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """With the fallback poll at 60 s, a 202 reaches the sandbox within 10 s: the doorbell."""
    key = await auth.create_key(database, "app", auth.parse_scopes("send,read"))
    with loop(
        make_settings,
        database_url,
        sandbox_config(),
        dispatch_fallback_poll_seconds=SLOW_POLL,
    ) as (settings, sandbox_url):
        async with running(create_app(settings, run_dispatcher=True)) as http:
            await asyncio.sleep(SETTLE)
            answer = await http.post(
                "/v1/messages",
                json={"to": "0712345678", "message": "Your code is 123456", "priority": "high"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 202
            assert await sent_within(sandbox_url, answer.json()["id"], WITHIN)


async def listener_pids(database_url: str) -> list[int]:
    """The server pids of wake-up listeners on this test's database."""
    name = database_url.rsplit("/", 1)[1]
    connection = await asyncpg.connect(wakeup.dsn_of(db.Database(database_url)))
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            name,
            wakeup.APPLICATION_NAME,
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


async def until(check: Callable[[], bool], within: float = 15) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_the_listener_reconnects_after_its_connection_is_killed_and_rings_on_notify(
    database_url: str, database: db.Database
) -> None:
    """pg_terminate_backend on the listener: lost, restored (ringing once), NOTIFY rings again."""
    doorbell = wakeup.Doorbell()
    listener = wakeup.Listener(wakeup.dsn_of(database), doorbell)
    stopping = asyncio.Event()
    with capture_logs() as entries:
        task = asyncio.create_task(listener.run(stopping))
        try:
            await asyncio.wait_for(listener.listening.wait(), 10)
            (pid,) = await listener_pids(database_url)
            async with database.write() as session:
                await wakeup.notify_if_due(session, [{"send_at": None}])
                doorbell.clear()
            assert await until(lambda: doorbell.rung)
            async with database.read() as session:
                await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

            def names() -> list[str]:
                return [str(entry["event"]) for entry in entries]

            assert await until(lambda: "wakeup_listener_restored" in names())
            assert names().count("wakeup_listener_lost") == 1
            assert doorbell.rung  # rung once on reconnect: a NOTIFY may have been missed
            assert (await listener_pids(database_url)) != [pid]
            doorbell.clear()
            async with database.write() as session:
                await wakeup.notify_if_due(session, [{"send_at": None}])
            assert await until(lambda: doorbell.rung)
        finally:
            stopping.set()
            await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_message_for_later_sends_no_notify(database: db.Database) -> None:
    """Only a message due now notifies: a future send_at would wake the worker for nothing."""
    doorbell = wakeup.Doorbell()
    listener = wakeup.Listener(wakeup.dsn_of(database), doorbell)
    stopping = asyncio.Event()
    task = asyncio.create_task(listener.run(stopping))
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        await asyncio.sleep(0.2)
        doorbell.clear()
        async with database.write() as session:
            await wakeup.notify_if_due(session, [{"send_at": clock.utcnow()}])
        await asyncio.sleep(0.5)
        assert not doorbell.rung
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
