"""The gauges read from the database, refreshed in the background, and ``GET /metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time

import prometheus_client
from starlette.requests import Request
from starlette.responses import Response

from tracker import clock, db, logs, metrics
from tracker.ops import queries
from tracker.settings import Settings

log = logs.get_logger(__name__)
SCRAPE_TIMEOUT_SECONDS = 2.0
GAUGES_MAX_AGE_SECONDS = 10.0


async def refresh_database_gauges(database: db.Database, settings: Settings) -> bool:
    """Set the gauges read from the database; False (and they keep old values) if it fails."""
    now = clock.utcnow()
    cutoff = now - dt.timedelta(seconds=settings.dlr_overdue_seconds)
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS), database.read() as session:
            totals = await queries.status_totals(session)
            queue = await queries.queue_snapshot(session, now, settings.rate_limit_per_minute)
            overdue = await queries.overdue_count(session, cutoff, None)
    except Exception as exc:  # the gauges keep their last values; the next round retries
        log.warning("metrics_database_unavailable", error=type(exc).__name__)
        metrics.DATABASE_UP.set(0)
        return False
    for name, count in totals.items():
        metrics.MESSAGES.labels(status=name).set(count)
    metrics.QUEUE_DEPTH.set(queue.depth)
    metrics.OLDEST_QUEUED_AGE.set(queue.oldest_queued_age_seconds or 0)
    metrics.OVERDUE.set(overdue)
    metrics.DATABASE_UP.set(1)
    return True


class GaugeRefresher:
    """Reads the database gauges every ``GAUGES_MAX_AGE_SECONDS`` in the background,
    so a scrape never waits on the database (a frozen one made it take seconds):
    it serves the last values, and their age."""

    def __init__(self, database: db.Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self._read_at: float | None = None
        self._stopping = asyncio.Event()
        # Set here, not when the task first runs: a scrape may come before that,
        # and must not show what an earlier app in this process read.
        metrics.DATABASE_UP.set(0)  # nothing read by this app yet
        metrics.DATABASE_GAUGES_AGE.set_function(self.age)

    def age(self) -> float:
        return math.inf if self._read_at is None else time.monotonic() - self._read_at

    async def refresh(self) -> None:
        if await refresh_database_gauges(self._database, self._settings):
            self._read_at = time.monotonic()

    def stop(self) -> None:
        """Ask ``run`` to return once the read in flight, if any, has finished.

        Not a cancel: a cancelled aiosqlite read goes on in its thread, which then
        reports to an event loop that may be closed by then."""
        self._stopping.set()

    async def run(self) -> None:
        """Until ``stop`` (the app's lifespan owns the task)."""
        while not self._stopping.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), GAUGES_MAX_AGE_SECONDS)


async def prometheus_metrics(_request: Request) -> Response:
    """``GET /metrics``: Prometheus text; no key, so keep it on the internal network.

    Never touches the database: the gauges read from it are the last values
    ``GaugeRefresher`` got (``tracker_metrics_database_age_seconds`` says how old).
    """
    return Response(
        prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
    )
