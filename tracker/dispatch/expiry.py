"""The expiry sweep: messages whose validity or key window ran out are never sent (again).

Set-based and bounded: one batch finishes at most ``limit`` messages with three
statements (pick and lock the rows, one INSERT ... SELECT of their events, one
UPDATE), so the write lock is held for milliseconds and other writers
(callbacks, the API) get in between batches. The caller runs batches until one
comes back short. On SQLite the whole transaction is one call to a thread with
a plain connection (as the callback writer does): the write lock is never held
across a wait for the busy event loop.

A message under a live lease is never touched: its dispatcher re-checks
validity itself right before the call (``outbox.confirm_send``). A message no
call could have reached the provider with (``attempts`` 0: never sent, or only
refused unsent by a 429 or an unavailable account) is expired when its validity
runs out; one that may have reached it (a timeout, a 5xx) is failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, case, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import clock, db, logs, models
from tracker.dispatch import outbox
from tracker.domain import status

Status = status.Status
BATCH_SIZE = 100  # messages per transaction: about 10 ms of the write lock on SQLite
MAX_BATCHES = 100  # per sweep (10,000 messages); the rest at the next one, a second later
log = logs.get_logger(__name__)
MESSAGES: Table = models.Message.__table__  # type: ignore[assignment]
EVENTS: Table = models.MessageEvent.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Batch:
    """What one transaction of the sweep did."""

    expired: int
    failed: int
    full: bool  # the batch was full: more may be waiting

    @property
    def finished(self) -> int:
        return self.expired + self.failed


def _expirable(now: dt.datetime, give_up_after: dt.timedelta) -> Any:
    """Queued or sending under no live lease, and its validity or key window over."""
    m = MESSAGES.c
    return and_(
        m.status.in_(status.DUE_STATUSES),
        or_(m.lease_until.is_(None), m.lease_until <= now),
        or_(m.expires_at <= now, m.submitted_at <= now - give_up_after),
    )


def _verdict(now: dt.datetime, expired: Any, failed: Any) -> Any:
    """Expired when no call can have reached the provider and the validity is over."""
    m = MESSAGES.c
    unsent = and_(m.attempts == 0, m.expires_at <= now)
    return case((unsent, expired), else_=failed)


async def sweep(
    database: db.Database,
    give_up_after: dt.timedelta,
    *,
    batch_size: int = BATCH_SIZE,
    stopping: asyncio.Event | None = None,
) -> int:
    """Batches until one comes back short (or ``MAX_BATCHES``); how many were finished."""
    started = time.perf_counter()
    expired = failed = transactions = 0
    longest = 0.0
    for _ in range(MAX_BATCHES):
        batch, took = await run_batch(database, clock.utcnow(), give_up_after, limit=batch_size)
        longest = max(longest, took)
        transactions += 1
        expired, failed = expired + batch.expired, failed + batch.failed
        if not batch.full or (stopping is not None and stopping.is_set()):
            break
        # As long again for everyone else: callbacks and the API keep at least half
        # of the write lock (and of the CPU) however much has run out at once.
        await asyncio.sleep(took)
    if expired or failed:
        log.info(
            "expired_overdue",
            expired=expired,
            failed=failed,
            transactions=transactions,
            longest_transaction_ms=round(longest * 1000, 1),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
    return expired + failed


async def run_batch(
    database: db.Database, now: dt.datetime, give_up_after: dt.timedelta, *, limit: int
) -> tuple[Batch, float]:
    """One batch in its own transaction: what it did, and how long it held the write lock."""
    if not database.is_sqlite:
        async with database.write() as session:
            began = time.perf_counter()
            batch = await expire_batch(session, now, give_up_after, limit=limit)
        return batch, time.perf_counter() - began
    # Connected before the lock is taken: the lock covers BEGIN to COMMIT only.
    connection = await asyncio.to_thread(database.sqlite3_connection)
    try:
        async with database.write_lock():
            return await asyncio.to_thread(_sqlite_batch, connection, now, give_up_after, limit)
    finally:
        await asyncio.to_thread(connection.close)


# The same statements in SQLite's own terms: ids as 32 hex digits, times as UTC text.
_SQLITE_PICK = """
    SELECT id, attempts = 0 AND expires_at <= :now, status FROM messages
    WHERE status IN ('queued', 'sending') AND (lease_until IS NULL OR lease_until <= :now)
        AND (expires_at <= :now OR submitted_at <= :cutoff)
    LIMIT :limit
"""
# After the move, so the webhook trigger's snapshot shows the message as it now is;
# each event's from_status is the one picked (``:picked``: [[id, status], ...]).
_SQLITE_EVENTS = """
    INSERT INTO message_events (message_id, from_status, to_status, source, detail, created_at)
    SELECT m.id, json_extract(p.value, '$[1]'), m.status, :source,
        CASE WHEN m.status = 'expired' THEN :expired_detail ELSE :failed_detail END,
        :now
    FROM json_each(:picked) AS p JOIN messages AS m ON m.id = json_extract(p.value, '$[0]')
"""
# "Unsent" (expired, not failed) is: attempts = 0 AND expires_at <= :now.
_SQLITE_MOVE = """
    UPDATE messages SET
        status = CASE WHEN attempts = 0 AND expires_at <= :now
            THEN 'expired' ELSE 'failed' END,
        rank = CASE WHEN attempts = 0 AND expires_at <= :now
            THEN :expired_rank ELSE :failed_rank END,
        error = CASE WHEN attempts = 0 AND expires_at <= :now
            THEN :expired_error ELSE :failed_error END,
        final_at = :now, updated_at = :now, lease_until = NULL
    WHERE id IN (SELECT value FROM json_each(:ids))
"""


def _sqlite_batch(
    connection: sqlite3.Connection, now: dt.datetime, give_up_after: dt.timedelta, limit: int
) -> tuple[Batch, float]:
    """On a worker thread: BEGIN IMMEDIATE to COMMIT in one go."""
    began = time.perf_counter()
    connection.execute("BEGIN IMMEDIATE")
    try:
        batch = _sqlite_statements(connection, now, give_up_after, limit)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return batch, time.perf_counter() - began


def _sqlite_statements(
    connection: sqlite3.Connection, now: dt.datetime, give_up_after: dt.timedelta, limit: int
) -> Batch:
    stamp = db.sqlite_time(now)
    params: dict[str, Any] = {
        "now": stamp,
        "cutoff": db.sqlite_time(now - give_up_after),
        "limit": limit,
    }
    rows = connection.execute(_SQLITE_PICK, params).fetchall()
    if not rows:
        return Batch(0, 0, full=False)
    params["ids"] = json.dumps([row[0] for row in rows])
    connection.execute(
        _SQLITE_MOVE,
        {
            **params,
            "expired_rank": status.RANK[Status.EXPIRED],
            "failed_rank": status.RANK[Status.FAILED],
            "expired_error": outbox.VALIDITY_RAN_OUT,
            "failed_error": outbox.WINDOW_RAN_OUT,
        },
    )
    connection.execute(
        _SQLITE_EVENTS,
        {
            "now": stamp,
            "picked": json.dumps([[row[0], row[2]] for row in rows]),
            "source": outbox.SOURCE,
            "expired_detail": f"sweep: {outbox.VALIDITY_RAN_OUT}",
            "failed_detail": f"sweep: {outbox.WINDOW_RAN_OUT}",
        },
    )
    expired = sum(1 for row in rows if row[1])
    return Batch(expired, len(rows) - expired, full=len(rows) == limit)


def _event_row(row: Any, now: dt.datetime) -> dict[str, Any]:
    """The event of one picked row (id, unsent, status) that the sweep finished."""
    why = outbox.VALIDITY_RAN_OUT if row[1] else outbox.WINDOW_RAN_OUT
    return {
        "message_id": row[0],
        "from_status": row[2],
        "to_status": (Status.EXPIRED if row[1] else Status.FAILED).value,
        "source": outbox.SOURCE,
        "detail": f"sweep: {why}",
        "created_at": now,
    }


async def expire_batch(
    session: AsyncSession,
    now: dt.datetime,
    give_up_after: dt.timedelta,
    *,
    limit: int = BATCH_SIZE,
) -> Batch:
    """Finish up to ``limit`` messages whose validity or retry window ran out."""
    m = MESSAGES.c
    expirable = _expirable(now, give_up_after)
    # Locked until commit on PostgreSQL (a claim skips them, as they skip a claim's);
    # SQLite has one writer at a time anyway.
    rows = (
        await session.execute(
            select(m.id, _verdict(now, True, False), m.status)  # noqa: FBT003 - SQL literals
            .where(expirable)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return Batch(0, 0, full=False)
    ids = [row[0] for row in rows]
    expired = sum(1 for row in rows if row[1])
    await session.execute(
        update(MESSAGES)
        .where(and_(m.id.in_(ids), expirable))
        .values(
            status=_verdict(now, Status.EXPIRED.value, Status.FAILED.value),
            rank=_verdict(now, status.RANK[Status.EXPIRED], status.RANK[Status.FAILED]),
            error=_verdict(now, outbox.VALIDITY_RAN_OUT, outbox.WINDOW_RAN_OUT),
            final_at=now,
            updated_at=now,
            lease_until=None,
        )
    )
    # The events after the move, so the webhook trigger's snapshot shows the message
    # as it now is; each from_status is the status picked above (the rows are locked).
    await session.execute(insert(EVENTS), [_event_row(row, now) for row in rows])
    return Batch(expired, len(rows) - expired, full=len(rows) == limit)
