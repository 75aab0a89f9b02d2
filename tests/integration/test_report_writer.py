"""The ingester's own connection: one short transaction per batch, within the deadline."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select, text

from tests.factories import add_message, count_rows, fetch_message
from tracker import clock, db, models
from tracker.domain import status
from tracker.reports import ingest, plan, reading, statements, writer
from tracker.reports.spool import Spool

DEADLINE = 0.5
ENDLESS_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
)


def receipt(message_id: uuid.UUID, status: str = "Delivered") -> reading.Receipt:
    body = json.dumps({"message_id": "p-1", "contact": "254712345678", "status": status})
    return reading.Receipt(message_id, body, "127.0.0.1", clock.utcnow())


async def test_a_batch_is_applied_and_the_connection_reused(database: db.Database) -> None:
    """Two batches on one writer: both applied, duplicates recognised across them."""
    message_id = await add_message(database)
    batch_writer = writer.for_database(database, DEADLINE)
    try:
        assert await batch_writer.apply([receipt(message_id)]) == [plan.Outcome.APPLIED]
        assert await batch_writer.apply([receipt(message_id), receipt(message_id, "Failed")]) == [
            plan.Outcome.DUPLICATE,
            plan.Outcome.STALE,
        ]
    finally:
        await batch_writer.close()
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_sqlite_statement_past_the_deadline_is_interrupted(
    database: db.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite itself stops a runaway batch at the deadline; the next batch works."""
    message_id = await add_message(database)
    real_apply = statements.apply_on_sqlite

    def endless(
        connection: sqlite3.Connection, _receipts: list[reading.Receipt], **_options: object
    ) -> None:
        connection.execute(ENDLESS_QUERY).fetchall()

    batch_writer = writer.for_database(database, DEADLINE)
    try:
        monkeypatch.setattr(statements, "apply_on_sqlite", endless)
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            await batch_writer.apply([receipt(message_id)])
        assert time.monotonic() - started < DEADLINE + 1.0
        monkeypatch.setattr(statements, "apply_on_sqlite", real_apply)
        assert await batch_writer.apply([receipt(message_id)]) == [plan.Outcome.APPLIED]
    finally:
        await batch_writer.close()


async def test_a_held_lock_spools_within_the_deadline_and_nothing_is_lost(
    database: db.Database, database_url: str, tmp_path: Path
) -> None:
    """Another writer holding the lock: the callback is spooled in time, then replayed once."""
    message_id = await add_message(database)
    spool = Spool(tmp_path / "spool.jsonl")
    ingester = ingest.Ingester(database, spool, deadline_seconds=DEADLINE)
    await ingester.start(replay_interval=3600)
    release = await _hold_the_write_lock(database, database_url, message_id)
    try:
        started = time.monotonic()
        assert await ingester.submit(receipt(message_id)) == ingest.SPOOLED
        assert time.monotonic() - started < 2 * DEADLINE + 1.0
    finally:
        await release()
        await ingester.stop()
    assert await ingest.replay(database, spool) == 1
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED
    assert await count_rows(database, models.CallbackReceipt, message_id) == 1
    assert await count_rows(database, models.MessageEvent, message_id) == 1
    assert await ingest.replay(database, spool) == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # PostgreSQL has no such lock
async def test_a_writer_in_this_process_holding_the_lock_counts_against_the_deadline(
    database: db.Database, tmp_path: Path
) -> None:
    """A long API transaction in the same process: the callback is spooled in time too."""
    message_id = await add_message(database)
    spool = Spool(tmp_path / "spool.jsonl")
    ingester = ingest.Ingester(database, spool, deadline_seconds=DEADLINE)
    await ingester.start(replay_interval=3600)
    holding, release = asyncio.Event(), asyncio.Event()

    async def long_transaction() -> None:
        async with database.write():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(long_transaction())
    try:
        await holding.wait()
        started = time.monotonic()
        assert await ingester.submit(receipt(message_id)) == ingest.SPOOLED
        assert time.monotonic() - started < DEADLINE + 1.0
    finally:
        release.set()
        await holder
        await ingester.stop()
    assert await ingest.replay(database, spool) == 1
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED


async def _hold_the_write_lock(
    database: db.Database, database_url: str, message_id: uuid.UUID
) -> Callable[[], Awaitable[None]]:
    """Lock what the ingester must write (another process would do the same)."""
    if database.is_sqlite:
        path = database.engine.url.database
        assert path is not None
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")

        async def release_sqlite() -> None:
            holder.execute("ROLLBACK")
            holder.close()

        return release_sqlite
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", message_id)

    async def release_postgresql() -> None:
        await transaction.rollback()
        await connection.close()

    return release_postgresql


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_lost_postgresql_connection_is_replaced(database: db.Database) -> None:
    """A backend the server terminated between batches is noticed: the next batch opens
    a new connection instead of failing (and tripping the breaker)."""
    message_id = await add_message(database)
    batch_writer = writer.for_database(database, DEADLINE)
    assert isinstance(batch_writer, writer.PostgreSQLWriter)
    try:
        assert await batch_writer.apply([receipt(message_id, "Sent")]) == [plan.Outcome.INTERIM]
        async with database.write() as session:
            await session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'tracker-callbacks' AND datname = current_database()"
                )
            )
        await asyncio.sleep(0.1)
        assert await batch_writer.apply([receipt(message_id)]) == [plan.Outcome.APPLIED]
    finally:
        await batch_writer.close()


async def _apply_both_ways(database: db.Database, live: bool) -> list[object]:
    """One batch of every kind of write, on fresh messages, through one path; what it left."""
    adopted = await add_message(database)
    garbled = await add_message(database)
    contradicted = await add_message(database, provider_message_id=f"p-{live}")

    def body(report_status: str, pmid: str, **extra: str) -> str:
        return json.dumps({"message_id": pmid, "status": report_status, **extra})

    bodies = [
        (adopted, body("Buffered", f"q-{live}", description="queued at the SMSC")),
        (adopted, body("Buffered", f"q-{live}", description="queued at the SMSC")),
        (adopted, body("Delivered", f"q-{live}")),
        (garbled, "not json"),
        (contradicted, body("Delivered", "someone-else")),
    ]
    batch = [reading.Receipt(m, b, "127.0.0.1", clock.utcnow()) for m, b in bodies]
    if live:
        batch_writer = writer.for_database(database, DEADLINE)
        try:
            outcomes = await batch_writer.apply(batch)
        finally:
            await batch_writer.close()
    else:
        async with database.write() as session:
            outcomes = await statements.apply_receipts(session, batch)
    left: list[object] = [outcomes]
    async with database.read() as session:
        for message_id in (adopted, garbled, contradicted):
            message = await session.get(models.Message, message_id)
            assert message is not None
            pmid = (message.provider_message_id or "").replace(str(live), "")
            left.append((message.status, message.provider_status, pmid))
            events = await session.scalars(
                select(models.MessageEvent)
                .where(models.MessageEvent.message_id == message_id)
                .order_by(models.MessageEvent.id)
            )
            left.append([(e.from_status, e.to_status, e.detail) for e in events])
            receipts = await session.scalars(
                select(models.CallbackReceipt.outcome)
                .where(models.CallbackReceipt.message_id == message_id)
                .order_by(models.CallbackReceipt.id)
            )
            left.append(sorted(receipts))  # PostgreSQL inserts them in dedupe key order
    return left


async def test_item_2_the_live_writer_and_the_replayer_apply_a_batch_alike(
    database: db.Database,
) -> None:
    """Issue 13 item 2: one planner and one statement set: both paths leave the same rows."""
    replayed = await _apply_both_ways(database, live=False)
    assert await _apply_both_ways(database, live=True) == replayed
    assert replayed[0] == [
        plan.Outcome.INTERIM,
        plan.Outcome.DUPLICATE,
        plan.Outcome.APPLIED,
        plan.Outcome.MALFORMED,
        plan.Outcome.MISMATCH,
    ]
    assert replayed[1] == (status.Status.DELIVERED.value, "Delivered", "q-")
