"""Where retention's reads and writes run (#17): off the server's loop, and on SQLite
with the WAL copied back after each batch, not inside its write lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db
from tracker.privacy import audit, retention_writer


async def test_reads_and_batches_run_on_the_writers_own_thread(database: db.Database) -> None:
    """Neither a plan's Python nor a batch's statements run on the caller's loop."""
    writer = retention_writer.Writer(database)

    async def where(_session: AsyncSession) -> str:
        return threading.current_thread().name

    try:
        assert await writer.read(where) == "retention-writer"
        assert (await writer.run(where))[0] == "retention-writer"
    finally:
        await writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        await writer.read(where)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_on_sqlite_a_batch_never_checkpoints_under_the_lock_and_one_follows_it(
    database: db.Database,
) -> None:
    """The writer's connection has no automatic checkpoint, and once the batch is done its
    row is in the database file itself (read with the WAL ignored)."""
    writer = retention_writer.Writer(database)

    async def batch(session: AsyncSession) -> int:
        await audit.record(session, audit.Action.RETENTION, audit.RETENTION_ACTOR, detail={})
        return int(await session.scalar(text("PRAGMA wal_autocheckpoint")) or 0)

    path = database.url.split("///", 1)[1]
    # Held open: closing the last connection to the file would checkpoint anyway.
    holder = sqlite3.connect(path)
    holder.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the file is open now
    try:
        try:
            automatic, _took = await writer.run(batch)
        finally:
            await writer.close()  # waits for the batch's checkpoint
        in_file = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            assert in_file.execute("SELECT count(*) FROM audit_events").fetchone() == (1,)
        finally:
            in_file.close()
    finally:
        holder.close()
    assert automatic == 0


async def test_a_batch_cut_short_gives_its_connection_back_before_the_writer_closes(
    database: db.Database,
) -> None:
    """A run cancelled mid-batch (the dispatcher stopping) ends on the writer's loop, rolled
    back and its connection returned, before the engine is disposed and the loop closed: no
    connection is left open for the garbage collector (a ResourceWarning, and on SQLite a
    worker thread answering a closed loop)."""
    writer = retention_writer.Writer(database)
    pool = writer._open().engine.sync_engine.pool  # the writer's own engine
    lent = {"out": 0}
    event.listen(pool, "checkout", lambda *_: lent.__setitem__("out", lent["out"] + 1))
    event.listen(pool, "checkin", lambda *_: lent.__setitem__("out", lent["out"] - 1))
    inside = threading.Event()

    async def batch(session: AsyncSession) -> None:
        await session.execute(text("SELECT 1"))
        inside.set()
        await asyncio.sleep(30)

    running = asyncio.ensure_future(writer.run(batch))
    assert await asyncio.to_thread(inside.wait, 10)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await writer.close()
    assert lent["out"] == 0
