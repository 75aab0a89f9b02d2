"""Wake the dispatcher at once when a message is accepted as due now.

In one process (``serve`` with its dispatcher) the send API rings a
``Doorbell`` after its commit. Across processes (``tracker worker``) on
PostgreSQL, the intake transaction issues ``NOTIFY tracker_due``, delivered
at commit, and a ``Listener`` on a dedicated asyncpg connection rings the
worker's doorbell. The listener reconnects with backoff when PostgreSQL goes
away, and rings once when it is back (a NOTIFY may have gone while no one
listened). The dispatcher still polls slowly, so a lost wake-up only delays.

A top-level module: the send path (``sending``) and the dispatcher
(``dispatch``, which imports ``sending``) both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db, logs

log = logs.get_logger(__name__)
CHANNEL = "tracker_due"
# Webhook deliveries to make: the trigger of migration 0004 notifies it, and so
# does whatever else queues a delivery (a retry, a recovery, a test event).
WEBHOOKS_CHANNEL = "tracker_webhooks"
APPLICATION_NAME = "tracker-wakeup"  # how the listener's session shows in pg_stat_activity
WEBHOOKS_APPLICATION_NAME = "tracker-webhooks-wakeup"  # the deliverer's listener
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0
CHECK_SECONDS = 5.0  # how often an idle listener proves its connection lives
_NOTIFY = text("SELECT pg_notify(:channel, '')")


class Doorbell:
    """An in-process wake-up: ``ring()`` from anywhere in the loop, ``wait()`` in the dispatcher.

    The dispatcher ``clear()``s it right before it looks for work, so a ring that
    comes while it looks is kept for its next wait, never lost."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    def ring_in(self, seconds: float) -> None:
        """Ring later (a retry comes due then)."""
        asyncio.get_running_loop().call_later(max(0.0, seconds), self.ring)

    def clear(self) -> None:
        self._event.clear()

    @property
    def rung(self) -> bool:
        return self._event.is_set()

    async def wait(self, seconds: float, stopping: asyncio.Event) -> None:
        """Until rung, ``stopping`` or ``seconds`` have passed, whichever comes first."""
        await _first_of(self._event, stopping, within=seconds)


def due_now(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any of the accepted rows is due at once (no ``send_at`` to wait for)."""
    return any(row.get("send_at") is None for row in rows)


async def notify_if_due(session: AsyncSession, rows: Iterable[Mapping[str, Any]]) -> None:
    """Inside the intake transaction: NOTIFY the dispatcher's process, at commit (PostgreSQL).

    SQLite has no such channel; there the dispatcher runs inside ``serve``."""
    if due_now(rows):
        await notify(session, CHANNEL)


async def notify(session: AsyncSession, channel: str) -> None:
    """Inside a transaction: NOTIFY ``channel`` at commit (PostgreSQL; nothing on SQLite)."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await session.execute(_NOTIFY, {"channel": channel})


def dsn_of(database: db.Database) -> str:
    """The plain asyncpg DSN of a PostgreSQL ``Database`` (its URL without the driver)."""
    url = database.engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Listener:
    """LISTEN on ``channel`` on a connection of its own; every NOTIFY rings the doorbell."""

    def __init__(
        self,
        dsn: str,
        doorbell: Doorbell,
        *,
        timeout_seconds: float = 5.0,
        channel: str = CHANNEL,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._application_name = application_name
        self._doorbell = doorbell
        self._timeout = timeout_seconds
        self.listening = asyncio.Event()  # set while LISTEN is in place (tests wait for it)

    async def run(self, stopping: asyncio.Event) -> None:
        """Listen until ``stopping``; reconnect with backoff whenever the connection goes."""
        delay, lost = RECONNECT_FIRST_SECONDS, False
        while not stopping.is_set():
            try:
                await self._listen(stopping, restored=lost)
                cause = "connection closed"
            except Exception as exc:  # any failure: the listener must outlive it and retry
                cause = type(exc).__name__
            if self.listening.is_set():  # it had been listening: a new outage starts
                self.listening.clear()
                delay, lost = RECONNECT_FIRST_SECONDS, False
            if stopping.is_set():
                break
            if not lost:  # one line an outage, however many tries it takes
                log.warning("wakeup_listener_lost", cause=cause, retry_in_seconds=delay)
            lost = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen(self, stopping: asyncio.Event, *, restored: bool) -> None:
        """One connection's life: LISTEN, ring once, then watch it until it or we stop."""
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            server_settings={"application_name": self._application_name},
        )
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _connection: closed.set())
        try:
            await connection.add_listener(self._channel, self._notified)
            self.listening.set()
            if restored:
                log.info("wakeup_listener_restored")
            self._doorbell.ring()  # whatever came while no one listened
            while not stopping.is_set() and not connection.is_closed():
                if not await _first_of(closed, stopping, within=CHECK_SECONDS):
                    # Quiet: prove the connection lives (a dead peer may send nothing).
                    await connection.fetchval("SELECT 1", timeout=self._timeout)
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=self._timeout)
            connection.terminate()

    def _notified(self, *_args: object) -> None:
        self._doorbell.ring()


async def _first_of(*events: asyncio.Event, within: float) -> bool:
    """Wait until one of ``events`` is set; whether one was (False: the timeout)."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _pending = await asyncio.wait(waits, timeout=within, return_when="FIRST_COMPLETED")
    finally:
        for wait in waits:
            wait.cancel()
    return bool(done)
