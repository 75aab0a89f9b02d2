"""The dispatcher's idle loop (issue 14): retries wake it, and losing the lock still stops it."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from tests.conftest import SettingsFactory
from tests.factories import add_message
from tests.provider_loop import is_final, loop, sandbox_config, wait_for
from tracker import db
from tracker.app import provider_client
from tracker.dispatch import dispatcher, housekeeping
from tracker.domain import status

SLOW_POLL = 60.0  # only a wake-up can get a message out within the tests' waits
FAIL_ONCE = "254700000502"  # the sandbox answers 500 to this number's first call


class LosingLock:
    """Leads at first, then finds the lock gone at its first check; never leads again."""

    def __init__(self) -> None:
        self.acquired = 0

    async def try_acquire(self) -> bool:
        self.acquired += 1
        return self.acquired == 1

    async def still_held(self) -> bool:
        return False

    async def release(self) -> None:
        return None


async def test_a_lost_lock_ends_the_claims_even_while_the_dispatcher_is_idle(
    make_settings: SettingsFactory,
    database_url: str,
    database: db.Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chores' leadership check deposes an idle leader (its fallback poll at 60 s): it
    logs the loss and goes back to waiting for the lock."""
    monkeypatch.setattr(housekeeping, "LEADERSHIP_CHECK_SECONDS", 0.05)
    with loop(
        make_settings, database_url, sandbox_config(), dispatch_fallback_poll_seconds=SLOW_POLL
    ) as (settings, _sandbox_url):
        async with provider_client(settings) as http:
            sender = dispatcher.create(settings, database, http)
            lock = LosingLock()
            sender.lock = lock
            with capture_logs() as entries:
                task = asyncio.create_task(sender.run())
                for _ in range(200):
                    if lock.acquired >= 2:
                        break
                    await asyncio.sleep(0.05)
                sender.stop()
                await asyncio.wait_for(task, 10)
    assert lock.acquired >= 2  # back to waiting for the lock
    assert "dispatcher_lost_leadership" in [entry["event"] for entry in entries]


async def test_a_retry_wakes_the_dispatcher_when_it_comes_due(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """A 500, then the retry goes out at its due time although the fallback poll is 60 s."""
    message_id = await add_message(database, status=status.Status.QUEUED, contact=FAIL_ONCE)
    with loop(
        make_settings, database_url, sandbox_config(), dispatch_fallback_poll_seconds=SLOW_POLL
    ) as (settings, _sandbox_url):
        async with provider_client(settings) as http:
            sender = dispatcher.create(settings, database, http)
            task = asyncio.create_task(sender.run())
            try:
                [row] = await wait_for(database, [message_id], is_final, within=20)
            finally:
                sender.stop()
                await asyncio.wait_for(task, 10)
    assert row.attempts == 2
