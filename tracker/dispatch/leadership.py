"""One active dispatcher per database, so the provider's rate limit holds.

PostgreSQL: a session advisory lock on a dedicated connection; the server
releases it when that connection dies, so a standby takes over within one
poll. SQLite: an exclusive ``flock`` on a file beside the database, released
by the kernel when the process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tracker import db, logs

log = logs.get_logger(__name__)
ADVISORY_LOCK_KEY = 0x6B696D69  # "kimi": one dispatcher per database
POLL_SECONDS = 1.0


# What a database that cannot be reached raises (SQLAlchemy wraps the driver's
# errors; a refused or timed-out connect can surface as the OSError itself).
UNREACHABLE = (sa_exc.SQLAlchemyError, OSError)


class Leadership(Protocol):
    async def try_acquire(self) -> bool:
        """Whether we lead now; raises ``UNREACHABLE`` errors when the database is away."""
        ...

    async def still_held(self) -> bool: ...

    async def release(self) -> None: ...


class AdvisoryLock:
    def __init__(self, database: db.Database, key: int = ADVISORY_LOCK_KEY) -> None:
        self._database = database
        self._key = key
        self._connection: AsyncConnection | None = None

    async def try_acquire(self) -> bool:
        try:
            if self._connection is None:
                self._connection = await self._database.engine.connect()
            got = await self._connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            )
            await self._connection.commit()
        except BaseException:  # its state is unknown: the next try starts afresh
            await self._drop_connection()
            raise
        return bool(got)

    async def still_held(self) -> bool:
        """The lock lives as long as its connection; prove the connection lives."""
        if self._connection is None:
            return False
        try:
            await self._connection.scalar(text("SELECT 1"))
            await self._connection.commit()
        except Exception as exc:  # connection lost: the server released the lock
            log.warning("leadership_connection_lost", cause=type(exc).__name__, exc_info=True)
            await self._drop_connection()
            return False
        return True

    async def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
                await self._connection.commit()
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.invalidate()
                await self._connection.close()
            self._connection = None


class FileLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def still_held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def for_database(database: db.Database) -> Leadership:
    if database.is_sqlite:
        path = Path(database.url.split("///", 1)[1] + ".dispatcher.lock")
        return FileLock(path)
    return AdvisoryLock(database)


async def wait_for_leadership(leadership: Leadership, stop: asyncio.Event) -> bool:
    """Poll until we lead (True) or are told to stop (False)."""
    standby = unreachable = False
    while not stop.is_set():
        try:
            leading = await leadership.try_acquire()
        except UNREACHABLE as exc:
            _log_unreachable(exc, first=not unreachable)
            unreachable, leading = True, False
        except Exception:  # a fault of ours: logged in full, and the next poll tries again
            log.exception("leadership_check_failed")
            leading = False
        else:
            if unreachable:
                log.info("database_reachable_again")
            unreachable = False
        if leading:
            log.info("dispatcher_leading")
            return True
        if not unreachable and not standby:
            log.info("dispatcher_standby", reason="another dispatcher holds the lock")
            standby = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)
    return False


def _log_unreachable(exc: BaseException, *, first: bool) -> None:
    """One warning with the traceback when an outage starts; then one debug line a poll."""
    cause = getattr(exc, "orig", None) or exc  # the driver's error, not SQLAlchemy's wrapper
    fields = {"cause": type(cause).__name__, "detail": db.driver_message(exc)}
    if first:
        log.warning("database_unreachable", during="leadership", exc_info=exc, **fields)
    else:
        log.debug("database_unreachable", during="leadership", **fields)
