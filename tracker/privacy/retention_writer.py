"""Where the retention job's reads and transactions run: off the server's event loop,
so that SQLite's write lock stays short and callbacks are answered meanwhile.

Each batch runs on an event loop of its own in a thread of its own, with its own
connections. On SQLite the write lock covers the whole database, so a
transaction must never wait for the server's busy loop between its statements
(as the expiry sweep and the callback writer never do): the server's loop holds
the process's write lock while the thread runs it, BEGIN to COMMIT (so the
callback writer waits in Python, not on SQLite's busy timeout). On PostgreSQL a
batch is a plain write transaction (row locks only). Reads (picking, planning
a batch's new values) take no lock: the Python work of a plan is done there, on
the thread, not on the server's loop.

A batch rewrites pages all over the indexes, more than SQLite's automatic
checkpoint allows in the WAL (1,000 pages), so the commit would copy them back
into the database file, fsync included, while holding the lock (as long as the
statements themselves). The writer's connections never checkpoint: a passive
checkpoint follows each batch, once the lock is given back, on a thread of its
own while callbacks commit and the next batch is planned.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import db, logs

log = logs.get_logger(__name__)
T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[T]]


class Writer:
    """Runs one batch per transaction; ``close()`` when done."""

    def __init__(self, database: db.Database) -> None:
        self.database = database
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=_serve, args=(self._loop,), name="retention-writer", daemon=True
        )
        self._thread.start()
        self._own: db.Database | None = db.Database(database.url)
        self._checkpoint: asyncio.Future[None] | None = None
        if database.is_sqlite:
            event.listen(self._own.engine.sync_engine, "connect", _no_automatic_checkpoint)

    async def run(self, work: Work[T]) -> tuple[T, float]:
        """``work`` in one write transaction: its result, and how long it held the lock."""
        own = self._open()
        await self._checkpointed()
        async with self.database.write_lock():  # SQLite's; on PostgreSQL no lock
            done = await self._on_thread(self._timed(own, work))
        if self.database.is_sqlite:  # meanwhile: the pause, the next batch's plan
            self._checkpoint = asyncio.ensure_future(asyncio.to_thread(self._copy_back))
        return done

    async def read(self, work: Work[T]) -> T:
        """``work`` in a read session (no write lock): picking, planning ahead."""

        own = self._open()

        async def reading() -> T:
            async with own.read() as session:
                return await work(session)

        return await self._on_thread(reading())

    async def _checkpointed(self) -> None:
        """The last batch's checkpoint is done (it never fails a batch: at worst the
        next commit of another connection checkpoints)."""
        if self._checkpoint is not None:
            checkpoint, self._checkpoint = self._checkpoint, None
            try:
                await checkpoint
            except sqlite3.Error as error:
                log.warning("retention_checkpoint_failed", error=db.driver_message(error))

    def _copy_back(self) -> None:
        connection = self.database.sqlite3_connection()
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.close()

    def _open(self) -> db.Database:
        if self._own is None:
            raise RuntimeError("the retention writer is closed")
        return self._own

    @staticmethod
    async def _timed(database: db.Database, work: Work[T]) -> tuple[T, float]:
        began = time.perf_counter()  # BEGIN to COMMIT: the write lock's span on SQLite
        async with database.write() as session:
            result = await work(session)
        return result, time.perf_counter() - began

    async def _on_thread(self, coroutine: Awaitable[T]) -> T:
        future = asyncio.run_coroutine_threadsafe(_awaited(coroutine), self._loop)
        return await asyncio.wrap_future(future)  # cancelled: so is the batch (rolled back)

    async def close(self) -> None:
        """Dispose of the own engine and end the thread; carried through even if the
        caller is cancelled meanwhile (no connection is left open)."""
        if self._own is None:
            return
        own, loop, thread = self._own, self._loop, self._thread
        self._own = None
        await asyncio.shield(self._checkpointed())

        async def shut() -> None:
            try:
                ending = asyncio.run_coroutine_threadsafe(_wound_down(own), loop)
                await asyncio.wrap_future(ending)
            finally:  # stopped from outside: a stop from within would lose the result
                loop.call_soon_threadsafe(loop.stop)
                await asyncio.to_thread(thread.join)

        await asyncio.shield(asyncio.ensure_future(shut()))


async def _wound_down(database: db.Database) -> None:
    """On the writer's loop: a batch cut short (its caller cancelled) ends first, rolled
    back and its connection given back, and only then is every connection closed. A loop
    stopped with a batch still ending would leave its connection to the garbage collector."""
    cut_short = asyncio.all_tasks() - {asyncio.current_task()}
    for task in cut_short:
        task.cancel()  # already asked by the caller's cancellation; this makes it certain
    await asyncio.gather(*cut_short, return_exceptions=True)
    await database.dispose()


def _no_automatic_checkpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The writer thread: its loop until stopped, then closed."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable
