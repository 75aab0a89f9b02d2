"""Leadership on PostgreSQL: what the dispatcher says when it cannot lead, and why."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from tests.processes import free_port
from tracker import db
from tracker.dispatch import leadership

Entries = list[MutableMapping[str, Any]]


async def _poll_until(
    lock: leadership.Leadership, entries: Entries, done: Callable[[Entries], bool]
) -> bool:
    """Run wait_for_leadership until ``done(entries)`` (or 15 s), then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(leadership.wait_for_leadership(lock, stop))
    deadline = time.monotonic() + 15
    while True:
        if done(entries) or task.done() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    stop.set()
    return await asyncio.wait_for(task, 10)


def _events(entries: Entries, name: str) -> Entries:
    return [entry for entry in entries if entry["event"] == name]


async def test_item_5_an_unreachable_database_is_reported_as_such_not_as_standby() -> None:
    """Item 5: a closed port logs one "database_unreachable" warning, never "standby"."""
    database = db.Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test")
    lock = _CountingLock(leadership.AdvisoryLock(database))
    try:
        with capture_logs() as entries:
            led = await _poll_until(lock, entries, lambda _entries: lock.tries >= 3)
    finally:
        await database.dispose()
    assert not led
    unreachable = _events(entries, "database_unreachable")
    # The first poll warns; the later ones say so at debug level, which a test run
    # configured for INFO (another test may have called logs.configure) filters out.
    first, *rest = unreachable
    assert first["log_level"] == "warning"
    assert first["cause"] in {"ConnectionRefusedError", "OSError"}
    assert isinstance(first["exc_info"], BaseException)  # item 17: the traceback, once
    assert all(e["log_level"] == "debug" and "exc_info" not in e for e in rest)
    assert _events(entries, "dispatcher_standby") == []


class _CountingLock:
    """An advisory lock that counts the polls made on it."""

    def __init__(self, lock: leadership.AdvisoryLock) -> None:
        self._lock = lock
        self.tries = 0

    async def try_acquire(self) -> bool:
        self.tries += 1
        return await self._lock.try_acquire()

    async def still_held(self) -> bool:
        return await self._lock.still_held()

    async def release(self) -> None:
        await self._lock.release()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_item_5_a_lock_held_elsewhere_is_standby(database: db.Database) -> None:
    """Item 5: with the database up and the lock taken, the standby reason is the lock."""
    holder, contender = leadership.AdvisoryLock(database), leadership.AdvisoryLock(database)
    assert await holder.try_acquire()
    try:
        with capture_logs() as entries:
            led = await _poll_until(
                contender, entries, lambda e: bool(_events(e, "dispatcher_standby"))
            )
    finally:
        await contender.release()
        await holder.release()
    assert not led
    [standby] = _events(entries, "dispatcher_standby")
    assert standby["reason"] == "another dispatcher holds the lock"
    assert _events(entries, "database_unreachable") == []


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_item_17_a_lost_lock_connection_is_logged_with_its_traceback(
    database: db.Database,
) -> None:
    """Item 17: when the server drops the lock's connection, the log says why, in full."""
    lock = leadership.AdvisoryLock(database)
    assert await lock.try_acquire()
    async with database.engine.connect() as admin:
        await admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND objid = :key"
            ),
            {"key": leadership.ADVISORY_LOCK_KEY},
        )
        await admin.commit()
    with capture_logs() as entries:
        held = await lock.still_held()
    await lock.release()
    assert not held
    [lost] = _events(entries, "leadership_connection_lost")
    assert lost["log_level"] == "warning"
    assert lost["exc_info"] is True
