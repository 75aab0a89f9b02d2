"""The leader's chores beside its claims: the expiry sweep, the Idempotency-Key purge,
the retention job, and the check that it still leads.

A task of their own, on their own clock: the claim loop sleeps until it is
woken (``wakeup``) or its slow poll comes, and a long sweep never delays a send.
The sweep and the retention job each run in a task of their own too, so a long
retention run delays neither sweeps nor the leadership check.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable

from tracker import clock, db, logs
from tracker.dispatch import expiry, leadership
from tracker.privacy import retention
from tracker.sending import store
from tracker.settings import Settings

log = logs.get_logger(__name__)
HOUSEKEEPING_SECONDS = 1.0  # how often validity and retry windows are checked
LEADERSHIP_CHECK_SECONDS = 5.0
PURGE_SECONDS = 600.0  # how often expired Idempotency-Keys are deleted


async def keep_house(
    database: db.Database,
    lock: leadership.Leadership,
    give_up_after: dt.timedelta,
    *,
    stopping: asyncio.Event,
    deposed: Callable[[], None],
    swept: Callable[[], None] = lambda: None,
    settings: Settings | None = None,
) -> None:
    """Until ``stopping``, or until the lock is lost: then ``deposed()`` and return.
    ``swept()`` after each expiry sweep (it may have queued webhook deliveries). With
    ``settings``, retention too: at once, then every ``TRACKER_RETENTION_INTERVAL``."""
    sweeping: asyncio.Task[None] | None = None
    retaining, checked, purged = _Retention.of(database, settings, stopping), time.monotonic(), None
    try:
        while not stopping.is_set():
            if sweeping is None or sweeping.done():
                sweeping = asyncio.create_task(
                    _expire(database, give_up_after, stopping, swept), name="expiry-sweep"
                )
            if retaining is not None:  # from one run's start to the next's
                retaining.start_when_due()
            if purged is None or time.monotonic() - purged > PURGE_SECONDS:
                await _purge(database)
                purged = time.monotonic()
            if time.monotonic() - checked > LEADERSHIP_CHECK_SECONDS:
                if not await lock.still_held():
                    log.warning("dispatcher_lost_leadership")
                    deposed()
                    return
                checked = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), HOUSEKEEPING_SECONDS)
    finally:
        if sweeping is not None:  # only the leader sweeps
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
        if retaining is not None:
            await retaining.cancel()


class _Retention:
    """The retention job's task: one run at a time, started on its interval."""

    def __init__(self, database: db.Database, settings: Settings, stopping: asyncio.Event) -> None:
        self.database, self.settings, self.stopping = database, settings, stopping
        self.task: asyncio.Task[None] | None = None
        self.started: float | None = None

    @classmethod
    def of(
        cls, database: db.Database, settings: Settings | None, stopping: asyncio.Event
    ) -> _Retention | None:
        return None if settings is None else cls(database, settings, stopping)

    def start_when_due(self) -> None:
        interval = self.settings.retention_interval.total_seconds()
        if self.task is not None and not self.task.done():
            return
        if self.started is None or time.monotonic() - self.started >= interval:
            self.started = time.monotonic()
            self.task = asyncio.create_task(self._run(), name="retention")

    async def _run(self) -> None:
        try:
            await retention.run(self.database, self.settings, stopping=self.stopping)
        except Exception as exc:  # retried at the next interval
            log.warning("retention_run_failed", error=type(exc).__name__, exc_info=True)

    async def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def _expire(
    database: db.Database,
    give_up_after: dt.timedelta,
    stopping: asyncio.Event,
    swept: Callable[[], None],
) -> None:
    try:
        if await expiry.sweep(database, give_up_after, stopping=stopping):
            swept()
    except Exception as exc:  # retried at the next sweep
        log.warning("dispatcher_sweep_failed", error=type(exc).__name__, exc_info=True)


async def _purge(database: db.Database) -> None:
    """Housekeeping for the whole deployment, done by its one leader."""
    try:
        async with database.write() as session:
            purged = await store.purge_idempotency_keys(session, clock.utcnow())
    except Exception as exc:  # retried at the next purge
        log.warning("idempotency_purge_failed", error=type(exc).__name__, exc_info=True)
    else:
        if purged:
            log.info("idempotency_keys_purged", count=purged)
