"""The KIMISMS callback receiver: answered in milliseconds, never losing a report.

Requests hand their receipt to one writer task (group commit): it applies
whatever is waiting in one short transaction under a deadline, then resolves
each request. A request is answered 200 only after its receipt was committed
or fsynced to the spool. While the database fails, a breaker sends receipts
straight to the spool; the replayer applies the spool once the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text

from tracker import db, logs, metrics, receipt_store, receipt_writer, reports
from tracker.spool import Spool

log = logs.get_logger(__name__)
MAX_BATCH = 256
BREAKER_SECONDS = 2.0  # after a database failure, spool directly for this long
ACK_BUDGET_SECONDS = 3.5  # a request never waits longer than this for the writer
REPLAY_INTERVAL_SECONDS = 5.0
REPLAY_PROBE_SECONDS = 5.0  # the database answers a trivial query within this
Spooled = Literal["spooled"]
SPOOLED: Spooled = "spooled"
Result = reports.Outcome | Spooled


@dataclass
class _Pending:
    receipt: reports.Receipt
    future: asyncio.Future[Result]


class Ingester:
    """Group commit of receipts, with the spool as the fallback."""

    def __init__(self, database: db.Database, spool: Spool, deadline_seconds: float) -> None:
        self.database = database
        self.spool = spool
        self.deadline_seconds = deadline_seconds
        self.writer = receipt_writer.for_database(database, deadline_seconds)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._broken_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._rescues: set[asyncio.Task[None]] = set()

    async def start(self, *, replay_interval: float = REPLAY_INTERVAL_SECONDS) -> None:
        self._tasks = [
            asyncio.create_task(self._write_forever(), name="callback-writer"),
            asyncio.create_task(self._replay_forever(replay_interval), name="callback-replayer"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():  # nothing acknowledged may be dropped
            pending = self._queue.get_nowait()
            await self._spool_and_resolve([pending])
        await self.writer.close()

    async def submit(self, receipt: reports.Receipt) -> Result:
        """Apply (or spool) one receipt; returns only once it is durable."""
        loop = asyncio.get_running_loop()
        pending = _Pending(receipt, loop.create_future())
        self._queue.put_nowait(pending)
        # A timer, not wait_for(): no extra task per callback on the hot path.
        timer = loop.call_later(ACK_BUDGET_SECONDS, self._rescue, pending)
        try:
            return await pending.future
        finally:
            timer.cancel()

    def _rescue(self, pending: _Pending) -> None:
        """The writer is stuck: spool this receipt now. Applying it again later is
        harmless (receipts are deduplicated, moves are conditional)."""
        if not pending.future.done():
            task = asyncio.create_task(self._spool_and_resolve([pending]))
            self._rescues.add(task)
            task.add_done_callback(self._rescues.discard)

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if time.monotonic() < self._broken_until:
                await self._spool_and_resolve(batch)
                continue
            try:
                outcomes = await self._apply(batch)
            except Exception as exc:  # any database failure: the spool takes over
                self._broken_until = time.monotonic() + BREAKER_SECONDS
                log.warning(
                    "callback_db_unavailable",
                    error=type(exc).__name__,
                    batch=len(batch),
                    exc_info=True,
                )
                await self._spool_and_resolve(batch)
                continue
            metrics.CALLBACK_BATCH_SIZE.observe(len(batch))
            for pending, outcome in zip(batch, outcomes, strict=True):
                if not pending.future.done():
                    pending.future.set_result(outcome)

    async def _apply(self, batch: list[_Pending]) -> list[reports.Outcome]:
        return await self.writer.apply([p.receipt for p in batch])

    async def _spool_and_resolve(self, batch: list[_Pending]) -> None:
        try:
            await asyncio.to_thread(self.spool.append, [p.receipt for p in batch])
        except OSError as exc:
            log.exception("callback_spool_failed", batch=len(batch))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        metrics.SPOOL_BACKLOG.inc(len(batch))
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(SPOOLED)

    async def _replay_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() < self._broken_until:
                continue
            try:
                await replay(self.database, self.spool)
            except Exception as exc:  # the database is still away; try again later
                log.warning("callback_replay_deferred", error=type(exc).__name__, exc_info=True)


async def replay(database: db.Database, spool: Spool, batch_size: int = MAX_BATCH) -> int:
    """Apply every spooled receipt; returns how many were read. Idempotent.

    Raises (leaving the spool for the next attempt) while the database fails;
    a receipt that fails on its own is quarantined instead of blocking the rest.
    """
    total = 0
    for path in await asyncio.to_thread(spool.claim):
        receipts = spool.read(path)
        for start in range(0, len(receipts), batch_size):
            await _replay_batch(database, spool, receipts[start : start + batch_size])
        path.unlink()
        total += len(receipts)
        log.info("callback_spool_replayed", file=path.name, receipts=len(receipts))
    metrics.SPOOL_BACKLOG.set(await asyncio.to_thread(spool.backlog))
    return total


async def _replay_batch(database: db.Database, spool: Spool, batch: list[reports.Receipt]) -> None:
    try:
        await _apply_in_own_transaction(database, batch)
    except Exception as error:
        if reports.failure_is_systemic(error):
            raise
    else:
        return
    # Something in the batch is refused: apply one at a time to find what.
    for receipt in batch:
        try:
            await _apply_in_own_transaction(database, [receipt])
        except Exception as error:
            if reports.failure_is_systemic(error):
                raise
            await _check_reachable(database, error)
            await _quarantine(spool, receipt, error)


async def _apply_in_own_transaction(database: db.Database, batch: list[reports.Receipt]) -> None:
    async with database.write() as session:
        await receipt_store.apply_receipts(session, batch)


async def _check_reachable(database: db.Database, error: Exception) -> None:
    """Quarantine only what the database refuses while it works: if it fails a
    trivial query too, the whole replay waits for it instead."""
    try:
        async with asyncio.timeout(REPLAY_PROBE_SECONDS), database.read() as session:
            await session.execute(text("SELECT 1"))
    except Exception as probe_error:
        raise error from probe_error


def _reason(error: Exception) -> str:
    """The driver's own words, never SQLAlchemy's message with the statement."""
    cause = getattr(error, "orig", None) or error
    return f"{type(cause).__name__}: {db.driver_message(error)}"[:300]


async def _quarantine(spool: Spool, receipt: reports.Receipt, error: Exception) -> None:
    reason = _reason(error)
    await asyncio.to_thread(spool.quarantine, receipt, reason)
    metrics.CALLBACKS.labels(outcome="quarantined").inc()
    log.error(
        "callback_quarantined",
        message_id=str(receipt.message_id),
        reason=reason,
        file=spool.quarantine_path.name,
    )
