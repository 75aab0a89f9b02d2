"""The callback ingester's own database connection: one batch, one short trip.

Through the SQLAlchemy pool, a group commit paid for a checkout, a session,
BEGIN, COMMIT and the reset on return before any statement ran: about a
millisecond of the event loop's time per batch, on the one route that is
under outside load. The ingester writes only receipts, with statements of its
own (``statements``), so it keeps one connection of its own instead:

- SQLite: a plain ``sqlite3`` connection on one thread; the whole transaction
  (BEGIN IMMEDIATE to COMMIT) is a single call to that thread, and the deadline
  is enforced inside SQLite (busy timeout, then a progress handler that aborts
  the running statement).
- PostgreSQL: one asyncpg connection, no pool checkout or pre-ping; a batch is
  BEGIN, the deadline (SET LOCAL statement and lock timeouts), three statements
  and COMMIT.

Either way a failed batch drops the connection (a new one is opened for the
next batch), and the caller spools what it could not write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import time
from collections.abc import Collection
from typing import Any, Protocol

import asyncpg

from tracker import db
from tracker.reports import plan, reading, statements

PROGRESS_STEPS = 10_000  # SQLite VM steps between two deadline checks (well under 1 ms)
# Keyword arguments SQLAlchemy's asyncpg adapter takes for itself.
_ADAPTER_ONLY = (
    "async_creator_fn",
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
)


class ReceiptWriter(Protocol):
    async def apply(
        self, receipts: list[reading.Receipt], *, refuse: Collection[str] = ()
    ) -> list[plan.Outcome]:
        """Apply a batch in one transaction (``refuse``: see ``plan.decide``)."""

    async def close(self) -> None: ...


def for_database(
    database: db.Database,
    deadline_seconds: float,
    *,
    cap: int = plan.REPORTS_PER_MESSAGE,
    conceal: plan.Conceal | None = None,
) -> ReceiptWriter:
    """The writer for the database's dialect, connecting like its engine does;
    ``cap``: the receipts stored per message, ``conceal``: see ``plan.decide``."""
    engine = database.engine
    if database.is_sqlite:
        if engine.url.database in {None, "", ":memory:"}:
            # A connection of its own would see another, empty database.
            raise ValueError("the callback writer needs an SQLite database file")
        return SQLiteWriter(database, deadline_seconds, cap, conceal)
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    return PostgreSQLWriter(dict(kwargs), deadline_seconds, cap, conceal)


class SQLiteWriter:
    """A batch is one call to a dedicated thread holding a plain sqlite3 connection."""

    def __init__(
        self,
        database: db.Database,
        deadline_seconds: float,
        cap: int,
        conceal: plan.Conceal | None = None,
    ) -> None:
        self._database = database
        self._cap = cap
        self._conceal = conceal
        self._deadline = deadline_seconds
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "callback-writer")
        self._connection: sqlite3.Connection | None = None
        self._give_up_at = 0.0  # monotonic; the progress handler aborts past it
        self._cancelled = False

    async def apply(
        self, receipts: list[reading.Receipt], *, refuse: Collection[str] = ()
    ) -> list[plan.Outcome]:
        # One deadline for the whole batch, the wait for the write lock included.
        self._give_up_at = time.monotonic() + self._deadline
        self._cancelled = False
        async with contextlib.AsyncExitStack() as held:
            # Writers in this process take turns (SQLite has one writer at a time);
            # waiting here is cheaper than SQLite's busy loop.
            async with asyncio.timeout(self._deadline):
                await held.enter_async_context(self._database.write_lock())
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(self._thread, self._apply, receipts, refuse)
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                self._cancelled = True  # the running statement stops at its next check
                with contextlib.suppress(Exception):
                    await work  # the lock is held until the thread has let go
                raise

    def _apply(
        self, receipts: list[reading.Receipt], refuse: Collection[str]
    ) -> list[plan.Outcome]:
        """On the writer's thread: the whole transaction, within what is left of the deadline."""
        connection = self._connection or self._open()
        left_ms = max(1, int((self._give_up_at - time.monotonic()) * 1000))
        try:
            # A lock held by another process is waited for only that long, and a
            # statement still running past the deadline is aborted ("interrupted").
            connection.execute(f"PRAGMA busy_timeout={left_ms}")
            connection.execute("BEGIN IMMEDIATE")
            outcomes = statements.apply_on_sqlite(
                connection, receipts, cap=self._cap, refuse=refuse, conceal=self._conceal
            )
            connection.execute("COMMIT")
        except BaseException:
            self._discard()  # closing rolls back whatever was begun
            raise
        return outcomes

    def _past_deadline(self) -> bool:
        return self._cancelled or time.monotonic() > self._give_up_at

    def _open(self) -> sqlite3.Connection:
        connection = self._database.sqlite3_connection()
        connection.set_progress_handler(self._past_deadline, PROGRESS_STEPS)
        self._connection = connection
        return connection

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._discard)
        self._thread.shutdown(wait=True)


class PostgreSQLWriter:
    """One asyncpg connection of the ingester's own."""

    def __init__(
        self,
        connect_kwargs: dict[str, Any],
        deadline_seconds: float,
        cap: int,
        conceal: plan.Conceal | None = None,
    ) -> None:
        self._connect_kwargs = {
            **{k: v for k, v in connect_kwargs.items() if k not in _ADAPTER_ONLY},
            "timeout": deadline_seconds,
            "server_settings": {"application_name": "tracker-callbacks"},
        }
        self._deadline = deadline_seconds
        self._cap = cap
        self._conceal = conceal
        self._timeouts = {"timeout_ms": statements.timeout_ms(deadline_seconds)}
        self._connection: asyncpg.Connection | None = None

    async def apply(
        self, receipts: list[reading.Receipt], *, refuse: Collection[str] = ()
    ) -> list[plan.Outcome]:
        try:
            async with asyncio.timeout(self._deadline):
                connection = await self._connected()
                async with connection.transaction():
                    # Per transaction (SET LOCAL), as a pooler in transaction mode needs.
                    await statements.POSTGRESQL_TIMEOUTS.execute(connection, self._timeouts)
                    return await statements.apply_on_postgresql(
                        connection, receipts, cap=self._cap, refuse=refuse, conceal=self._conceal
                    )
        except BaseException:
            self._discard()
            raise

    async def _connected(self) -> asyncpg.Connection:
        """The connection, or a new one if the server has closed it since the last batch."""
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        connection: asyncpg.Connection = await asyncpg.connect(**self._connect_kwargs)
        self._connection = connection
        return connection

    def _discard(self) -> None:
        """Drop the connection after a failure: its state is unknown."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await asyncio.wait_for(connection.close(), self._deadline)
        except Exception:  # the server does not answer: drop the socket
            connection.terminate()
