"""Wake at once across processes (issue 14): the API's NOTIFY wakes a `tracker worker`."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.acceptance.test_worker import leading, provider_and_receiver, sends_for, wait_until
from tests.conftest import SettingsFactory, running
from tests.processes import Running, started
from tracker import auth, db, wakeup
from tracker.app import create_app

SLOW_POLL = "60"  # seconds: far longer than the test waits, so only NOTIFY can send in time
WITHIN = 10.0
SETTLE = 1.5  # the worker leads, looks once and goes idle


async def send_one(make_settings: SettingsFactory, database_url: str, key: str) -> str:
    """POST one due message through an API in this process (not the worker's); its id."""
    app = create_app(make_settings(database_url=database_url))
    async with running(app) as http:
        answer = await http.post(
            "/v1/messages",
            json={"to": "0712345678", "message": "Your code is 123456", "priority": "high"},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert answer.status_code == 202
    message_id: str = answer.json()["id"]
    return message_id


async def sent_within(sandbox_url: str, message_id: str, seconds: float) -> bool:
    """Whether the sandbox had the send within ``seconds`` of now."""
    started_at = time.monotonic()
    found = await wait_until(
        lambda: sends_for(sandbox_url, uuid.UUID(message_id)) == 1, within=seconds
    )
    return found and time.monotonic() - started_at <= seconds


async def until_leading(worker: Running) -> None:
    assert await wait_until(lambda: leading(worker), within=30), worker.output()[-2000:]
    await asyncio.sleep(SETTLE)


async def kill_listener(database: db.Database) -> int:
    """pg_terminate_backend on the worker's listener connection; how many were killed."""
    name = database.engine.url.database
    connection = await asyncpg.connect(wakeup.dsn_of(database))
    try:
        killed: int = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = $2",
            name,
            wakeup.APPLICATION_NAME,
        )
    finally:
        await connection.close()
    return killed


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_message_accepted_by_the_api_wakes_a_worker_in_another_process(
    make_settings: SettingsFactory, database_url: str, database: db.Database, tmp_path: Path
) -> None:
    """Fallback poll at 60 s: the worker sends within 10 s of the 202, then again after its
    listener's connection was killed and came back."""
    key = await auth.create_key(database, "app", auth.parse_scopes("send,read"))
    with provider_and_receiver(make_settings, database_url, tmp_path) as (base, sandbox_url):
        env = {**base, "TRACKER_DISPATCH_FALLBACK_POLL_SECONDS": SLOW_POLL}
        with started("worker", env=env) as worker:
            await until_leading(worker)
            first = await send_one(make_settings, database_url, key)
            assert await sent_within(sandbox_url, first, WITHIN), worker.output()[-2000:]
            assert await kill_listener(database) == 1
            restored = '"wakeup_listener_restored"'
            assert await wait_until(lambda: restored in worker.output(), within=30)
            assert worker.output().count('"wakeup_listener_lost"') == 1
            await asyncio.sleep(SETTLE)  # the ring on reconnect found nothing: idle again
            second = await send_one(make_settings, database_url, key)
            assert await sent_within(sandbox_url, second, WITHIN), worker.output()[-2000:]
