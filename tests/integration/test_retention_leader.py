"""The dispatcher's leader runs the retention job on its interval, and only the leader (#17)."""

from __future__ import annotations

import asyncio
import uuid

from tests.conftest import SettingsFactory
from tests.integration import retention_support as rs
from tests.provider_loop import dispatching, loop, sandbox_config
from tracker import db
from tracker.app import provider_client
from tracker.dispatch import dispatcher


async def _redacted(database: db.Database, message_id: uuid.UUID, within: float) -> bool:
    for _ in range(int(within / 0.05)):
        found = await rs.message(database, message_id)
        if found is not None and found.body is None:
            return True
        await asyncio.sleep(0.05)
    return False


class NeverLeads:
    """A standby's lock: someone else always holds it."""

    async def try_acquire(self) -> bool:
        return False

    async def still_held(self) -> bool:
        return False

    async def release(self) -> None:
        return None


async def test_the_leader_runs_retention_at_once_and_again_each_interval(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """A due body goes soon after the leader starts; one that falls due later goes at the next
    run, an interval (1 s here) after the first started."""
    first = await rs.add(database, final_days_ago=100)
    with loop(make_settings, database_url, sandbox_config(), retention_interval="1s") as (
        settings,
        _sandbox_url,
    ):
        async with dispatching(settings, database):
            assert await _redacted(database, first, within=10)
            later = await rs.add(database, final_days_ago=100)
            assert await _redacted(database, later, within=10)


async def test_a_standby_never_runs_retention(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """A dispatcher that does not hold the lock leaves due rows alone."""
    due = await rs.add(database, final_days_ago=100)
    with loop(make_settings, database_url, sandbox_config(), retention_interval="1s") as (
        settings,
        _sandbox_url,
    ):
        async with provider_client(settings) as http:
            standby = dispatcher.create(settings, database, http)
            standby.lock = NeverLeads()
            task = asyncio.create_task(standby.run())
            assert not await _redacted(database, due, within=2)
            standby.stop()
            await asyncio.wait_for(task, 10)
