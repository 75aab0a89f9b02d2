"""The KIMISMS callback receiver: answered in milliseconds, never losing a report.

Requests hand their receipt to one writer task (group commit): it applies
whatever is waiting in one short transaction under a deadline, then resolves
each request. A request is answered 200 only after its receipt was committed
or fsynced to the spool. While the database fails, a breaker sends receipts
straight to the spool; the replayer applies the spool once the database is back.

Only a failure of the database (unreachable, too slow, locked) opens the
breaker. A batch the database refuses for what one receipt holds (a constraint)
is split until that receipt stands alone: the others are applied and answered
as usual, and it is recorded and refused as a mismatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import text

from tracker import db, logs, metrics
from tracker.reports import plan, reading, statements, writer
from tracker.reports.spool import Spool

log = logs.get_logger(__name__)
MAX_BATCH = 256
BREAKER_SECONDS = 2.0  # after a database failure, spool directly for this long
ACK_BUDGET_SECONDS = 3.5  # a request never waits longer than this for the writer
REPLAY_INTERVAL_SECONDS = 5.0
REPLAY_PROBE_SECONDS = 5.0  # the database answers a trivial query within this
Spooled = Literal["spooled"]
SPOOLED: Spooled = "spooled"
Result = plan.Outcome | Spooled


@dataclass
class _Pending:
    receipt: reading.Receipt
    future: asyncio.Future[Result]


class Ingester:
    """Group commit of receipts, with the spool as the fallback."""

    def __init__(
        self,
        database: db.Database,
        spool: Spool,
        deadline_seconds: float,
        *,
        reports_per_message: int = plan.REPORTS_PER_MESSAGE,
        committed: Callable[[], None] | None = None,
        conceal: plan.Conceal | None = None,
    ) -> None:
        self.database = database
        self.conceal = conceal  # numbers out of what is stored about pseudonymised messages
        # Called after each commit that may have changed statuses (the webhook doorbell).
        self.committed = committed or (lambda: None)
        self.spool = spool
        self.deadline_seconds = deadline_seconds
        self.reports_per_message = reports_per_message
        self.writer = writer.for_database(
            database, deadline_seconds, cap=reports_per_message, conceal=conceal
        )
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._broken_until = 0.0
        # Whether the writer / the replayer is in an outage: its traceback is logged
        # once when it starts. Formatting one costs milliseconds on the event loop
        # (much more with a console renderer), which the callbacks must not pay twice.
        self._writer_failing = False
        self._replay_failing = False
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

    async def submit(self, receipt: reading.Receipt) -> Result:
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
                await self._commit(batch)
            except Exception as exc:  # the database failed: the spool takes over
                self._broken_until = time.monotonic() + BREAKER_SECONDS
                log.warning(
                    "callback_db_unavailable",
                    error=type(exc).__name__,
                    batch=len(batch),
                    exc_info=not self._writer_failing,
                )
                self._writer_failing = True
                await self._spool_and_resolve([p for p in batch if not p.future.done()])
            else:
                self.committed()
                if self._writer_failing:
                    log.info("callback_db_available_again")
                self._writer_failing = False

    async def _commit(self, batch: list[_Pending], refuse: frozenset[str] = frozenset()) -> None:
        """Apply a batch and resolve its requests; raises only for a systemic failure.

        A batch refused for what it holds is split in halves (applied in order)
        until the receipt to blame stands alone.
        """
        try:
            outcomes = await self.writer.apply([p.receipt for p in batch], refuse=refuse)
        except Exception as exc:
            if db.is_unavailable(exc):
                raise
            if len(batch) == 1:
                await self._set_aside(batch[0], exc, refused=bool(refuse))
            else:
                middle = len(batch) // 2
                await self._commit(batch[:middle])
                await self._commit(batch[middle:])
            return
        metrics.CALLBACK_BATCH_SIZE.observe(len(batch))
        _count_dropped(outcomes)
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not pending.future.done():
                pending.future.set_result(outcome)

    async def _set_aside(self, pending: _Pending, error: Exception, *, refused: bool) -> None:
        """A receipt the database refuses on its own. A constraint it breaks is a
        contradiction: recorded as a mismatch (409). Anything else (or a record
        that fails too) goes to the spool, whose replayer quarantines it if it
        fails again: nothing answered 200 is lost, and the breaker stays shut."""
        log.warning(
            "callback_refused_by_database",
            message_id=str(pending.receipt.message_id),
            error=type(error).__name__,
        )
        if db.is_integrity_error(error) and not refused:
            await self._commit([pending], refuse=frozenset({pending.receipt.dedupe_key}))
        else:
            await self._spool_and_resolve([pending])

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
                replayed = await replay(
                    self.database, self.spool, cap=self.reports_per_message, conceal=self.conceal
                )
            except Exception as exc:  # the database is still away; try again later
                log.warning(
                    "callback_replay_deferred",
                    error=type(exc).__name__,
                    exc_info=not self._replay_failing,
                )
                self._replay_failing = True
            else:
                self._replay_failing = False
                if replayed:
                    self.committed()


def _count_dropped(outcomes: list[plan.Outcome]) -> None:
    dropped = outcomes.count(plan.Outcome.IGNORED)
    if dropped:
        metrics.CALLBACK_REPORTS_DROPPED.inc(dropped)


async def replay(
    database: db.Database,
    spool: Spool,
    batch_size: int = MAX_BATCH,
    *,
    cap: int = plan.REPORTS_PER_MESSAGE,
    conceal: plan.Conceal | None = None,
) -> int:
    """Apply every spooled receipt; returns how many were read. Idempotent.

    Each file is streamed in batches, and the file work (reading, parsing, the
    fsyncs of quarantine) runs in a thread, never on the event loop. Raises
    (leaving the spool for the next attempt) while the database fails; a
    receipt that fails on its own is quarantined instead of blocking the rest.
    """
    total = 0
    for path in await asyncio.to_thread(spool.claim):
        count = await _replay_file(database, spool, path, batch_size, (cap, conceal))
        await asyncio.to_thread(path.unlink)
        total += count
        log.info("callback_spool_replayed", file=path.name, receipts=count)
    metrics.SPOOL_BACKLOG.set(await asyncio.to_thread(spool.backlog))
    return total


Rules = tuple[int, plan.Conceal | None]  # cap and conceal, as plan.decide takes them


async def _replay_file(
    database: db.Database, spool: Spool, path: Path, batch_size: int, cap: Rules
) -> int:
    batches = spool.batches(path, batch_size)
    count, end = 0, list[reading.Receipt]()
    try:
        while batch := await asyncio.to_thread(next, batches, end):
            await _replay_batch(database, spool, batch, cap)
            count += len(batch)
    finally:
        # Cancelled while a thread still reads: that thread finishes its step and
        # the generator (with its file) is closed when it is collected.
        with contextlib.suppress(ValueError):  # "generator already executing"
            await asyncio.to_thread(batches.close)
    return count


async def _replay_batch(
    database: db.Database, spool: Spool, batch: list[reading.Receipt], cap: Rules
) -> None:
    try:
        await _apply_in_own_transaction(database, batch, cap)
    except Exception as error:
        if db.is_unavailable(error):
            raise
    else:
        return
    # Something in the batch is refused: apply one at a time to find what.
    for receipt in batch:
        try:
            await _apply_in_own_transaction(database, [receipt], cap)
        except Exception as error:
            if db.is_unavailable(error):
                raise
            await _check_reachable(database, error)
            await _quarantine(spool, receipt, error)


async def _apply_in_own_transaction(
    database: db.Database, batch: list[reading.Receipt], rules: Rules
) -> None:
    cap, conceal = rules
    async with database.write() as session:
        outcomes = await statements.apply_receipts(session, batch, cap=cap, conceal=conceal)
    _count_dropped(outcomes)


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


async def _quarantine(spool: Spool, receipt: reading.Receipt, error: Exception) -> None:
    reason = _reason(error)
    await asyncio.to_thread(spool.quarantine, receipt, reason)
    metrics.CALLBACKS.labels(outcome="quarantined").inc()
    log.error(
        "callback_quarantined",
        message_id=str(receipt.message_id),
        reason=reason,
        file=spool.quarantine_path.name,
    )
