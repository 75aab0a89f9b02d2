"""500 messages through a misbehaving provider: each sent exactly once, none lost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from tests.conftest import SettingsFactory
from tests.processes import free_port
from tests.provider_loop import CLIENT_ID, CLIENT_SECRET, dispatching
from tracker import clock, db, models
from tracker.app import create_app
from tracker.clients import records
from tracker.domain import status
from tracker.sandbox import SandboxConfig
from tracker.sandbox.server import running_app, running_sandbox

MESSAGES = 500
RATE_PER_MINUTE = 1200
FAULTS = SandboxConfig(
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    rate_limit_per_minute=RATE_PER_MINUTE,
    token_lifetime_seconds=5,
    callback_delay_seconds=0.05,
    failure_ratio=0.1,
    error_500_rate=0.1,
    accept_then_hang_rate=0.05,
    hang_seconds=1.5,
    rate_429_burst_rate=0.02,
    duplicate_callback_rate=0.1,
    stale_callback_rate=0.1,
    early_callback_rate=0.05,
    seed=7,
)


async def queue_messages(database: db.Database, count: int) -> None:
    now = clock.utcnow()
    rows = [
        {
            "id": models.new_id(),
            "client": "chaos",
            "sender_name": "KIMISMS",
            "contact": f"2547{10_000_000 + n:08d}",  # clear of the sandbox's magic block
            "body": f"message {n}",
            "segments": 1,
            "encoding": "gsm7",
            "priority": 1,
            "status": status.Status.QUEUED.value,
            "rank": 0,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(count)
    ]
    async with database.write() as session:
        await records.ensure(session, "chaos")
        await session.execute(insert(models.Message), rows)


async def status_counts(database: db.Database) -> dict[str, int]:
    async with database.read() as session:
        rows = await session.execute(
            select(models.Message.status, func.count()).group_by(models.Message.status)
        )
        return dict(rows.all())


def sandbox_stats(sandbox_url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{sandbox_url}/sandbox/stats").json()
    return stats


@pytest.mark.slow
async def test_every_message_is_sent_exactly_once_through_faults(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """500s, lost answers, 429 bursts and expiring tokens: one send per message, all final,
    and no 429 caused by our own pacing."""
    await queue_messages(database, MESSAGES)
    port = free_port()
    with running_sandbox(FAULTS) as sandbox_url:
        settings = make_settings(
            database_url=database_url,
            kimisms_base_url=sandbox_url,
            kimisms_client_id=CLIENT_ID,
            kimisms_client_secret=CLIENT_SECRET,
            public_url=f"http://127.0.0.1:{port}",
            rate_limit_per_minute=RATE_PER_MINUTE,
            retry_base_seconds=0.05,
            retry_max_seconds=0.5,
            provider_read_timeout_seconds=0.75,
            max_attempts=50,
        )
        with running_app(create_app(settings), port=port):
            async with dispatching(settings, database):
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    counts = await status_counts(database)
                    if sum(counts.get(s.value, 0) for s in status.FINAL) == MESSAGES:
                        break
                    await asyncio.sleep(0.5)
            await asyncio.sleep(0.5)  # the last duplicate/stale reports land
            stats = await asyncio.to_thread(sandbox_stats, sandbox_url)
        final = await status_counts(database)
    assert set(final) <= {"delivered", "failed"}, final
    assert sum(final.values()) == MESSAGES
    assert stats["accepted_sends"] == MESSAGES
    assert stats["distinct_idempotency_keys"] == MESSAGES
    assert stats["max_sends_per_key"] == 1
    assert stats["sends_without_key"] == 0
    assert stats["server_errors"] > 0  # the faults really happened
    assert stats["token_calls"] > 1
    assert stats["throttled_by_limit"] == 0  # only injected bursts were refused
