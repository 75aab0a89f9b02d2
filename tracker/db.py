"""Engine, sessions and the SQLite rules that keep concurrent writers safe.

``Database.write()`` is the only way to open a write transaction. On SQLite it
serialises writers inside the process with an asyncio lock (SQLite allows one
writer; waiting in Python beats "database is locked"), and starts the
transaction with ``BEGIN IMMEDIATE`` so a writer from another process is
waited for by ``busy_timeout`` instead of failing on upgrade. On PostgreSQL it
is a plain transaction. ``Named`` gives asyncpg statements written with
``:name`` parameters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import DateTime, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from tracker import clock, errors

SQLITE_BUSY_TIMEOUT_MS = 5000
# PostgreSQL error classes that blame the server or the session, not the data
# sent: 08 connection, 28 authorization, 3D no such database, 40 rollback
# (deadlock, serialization), 42 syntax or access (a missing table: an
# unmigrated schema), 53 resources, 55 lock not available, 57 operator
# intervention (statement timeout, shutdown), 58 system error, XX internal.
UNAVAILABLE_SQLSTATE_CLASSES = frozenset(
    {"08", "28", "3D", "40", "42", "53", "55", "57", "58", "XX"}
)
# The same, raised by the drivers themselves (the callback writer runs its
# statements on the driver connection) or already translated by us.
_UNAVAILABLE_ERRORS = (
    errors.DatabaseUnavailable,
    OSError,
    TimeoutError,
    sa_exc.OperationalError,  # SQLite's "database is locked" is one
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
    asyncpg.InterfaceError,
)
_INTEGRITY_ERRORS = (
    sa_exc.IntegrityError,
    sqlite3.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,  # UniqueViolationError and its kin
)


def is_sqlite(session: AsyncSession) -> bool:
    """Whether the session's statements are SQLite's (else PostgreSQL's, the only other)."""
    return session.get_bind().dialect.name == "sqlite"


def upsert(session: AsyncSession, table: Any) -> sqlite.Insert | postgresql.Insert:
    """An INSERT into ``table`` in the session's dialect, which has ``on_conflict_*``."""
    return (sqlite.insert if is_sqlite(session) else postgresql.insert)(table)


def json_rows(value: Any) -> str:
    """A batch as one JSON parameter (for SQLite's json_each): compact, UUIDs as 32 hex,
    and raw UTF-8 rather than \\u escapes, so no surrogate pairs for SQLite's JSON reader."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_hex)


def _hex(value: object) -> str:
    if isinstance(value, uuid.UUID):
        return value.hex
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def sqlite_time(value: dt.datetime) -> str:
    """UTCDateTime's text on SQLite (naive UTC, always with microseconds), for raw SQL."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite stores text without an offset, so
    the value is normalised to UTC on the way in and tagged UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = clock.require_aware(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self,
        value: dt.datetime | None,
        dialect: Dialect,  # noqa: ARG002 - the signature is SQLAlchemy's
    ) -> dt.datetime | None:
        return clock.restore_utc(value)


def configure_sqlite_connection(
    dbapi_connection: Any, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> None:
    """WAL, the busy timeout and foreign keys; transactions begun explicitly."""
    # Let SQLAlchemy, not the driver, decide when a transaction starts, so that
    # write() can issue BEGIN IMMEDIATE itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(url: str, timeout_seconds: float | None = None, **kwargs: Any) -> AsyncEngine:
    """An async engine with the SQLite pragmas applied to every connection.

    ``timeout_seconds`` bounds connecting, waiting for a pooled connection and
    each statement (PostgreSQL: asyncpg's connect and command timeouts and the
    server's statement and lock timeouts; SQLite: the busy timeout), so an
    outage fails fast instead of hanging requests. Statement parameters
    (message bodies, phone numbers) are kept out of SQLAlchemy's error
    messages, which end up in logs.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        _ensure_sqlite_directory(url)
        busy_ms = SQLITE_BUSY_TIMEOUT_MS if timeout_seconds is None else timeout_seconds * 1000
        if timeout_seconds is not None:
            kwargs.setdefault("connect_args", {"timeout": timeout_seconds})
        engine = create_async_engine(url, **kwargs)

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            configure_sqlite_connection(dbapi_connection, int(busy_ms))

        event.listen(engine.sync_engine, "connect", on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if timeout_seconds is not None:
        server_ms = str(int(timeout_seconds * 1000))
        kwargs.setdefault(
            "connect_args",
            {
                "timeout": timeout_seconds,
                "command_timeout": timeout_seconds,
                "server_settings": {"statement_timeout": server_ms, "lock_timeout": server_ms},
            },
        )
        kwargs.setdefault("pool_timeout", timeout_seconds)
    return create_async_engine(url, **kwargs)


def _ensure_sqlite_directory(url: str) -> None:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def driver_message(error: BaseException) -> str:
    """The first line of the driver's own message (SQLAlchemy's wraps it with the
    statement), or the error's type when it has none."""
    cause = getattr(error, "orig", None) or error
    return next(iter(str(cause).splitlines()), "") or type(cause).__name__


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot serve now (unreachable, too slow,
    locked, shutting down), so trying again later may work, rather than that a
    statement or a value is wrong (it would fail the same way every time)."""
    if isinstance(error, _UNAVAILABLE_ERRORS):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig or error
        if isinstance(error, _UNAVAILABLE_ERRORS):
            return True
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES


def is_integrity_error(error: BaseException) -> bool:
    """Whether the database refused what was written (a constraint, SQLSTATE
    class 23): a row-level refusal, never a sign that the database is away."""
    if isinstance(error, _INTEGRITY_ERRORS):
        return True
    sqlstate = getattr(getattr(error, "orig", None) or error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("23")


@contextmanager
def unavailable_as_domain_error() -> Iterator[None]:
    """The one place driver outage errors become ``errors.DatabaseUnavailable``."""
    try:
        yield
    except errors.DatabaseUnavailable:
        raise
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        cause = getattr(exc, "orig", None) or exc
        raise errors.DatabaseUnavailable(type(cause).__name__) from exc


# In a statement for asyncpg, string literals, quoted names and comments are kept
# as they are, and so is "::" (a cast); ":name" is a parameter; "$n" is refused.
_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|::|:([A-Za-z_]\w*)|(\$\d+)""")


class Named:
    """A statement with ``:name`` parameters for asyncpg, which takes only ``$n``.

    Compiled once, at import: ``sql`` is the ``$n`` text and ``names`` the name of
    each ``$n`` in order (a name used twice is one parameter). sqlite3 takes
    ``:name`` and a dict itself.
    """

    def __init__(self, sql: str) -> None:
        numbers: dict[str, str] = {}  # name -> "$n", in the order of first use

        def number(match: re.Match[str]) -> str:
            name, positional = match.groups()
            if positional:
                raise ValueError(f"{positional} in a statement of :name parameters")
            if name is None:  # a literal, a quoted name, a comment or a cast
                return match.group()
            return numbers.setdefault(name, f"${len(numbers) + 1}")

        self.sql = _TOKENS.sub(number, sql)
        self.names = tuple(numbers)
        self._expected = frozenset(numbers)

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The values in ``$n`` order: every name given, and no other."""
        if values.keys() != self._expected:
            missing = sorted(self._expected - values.keys())
            unknown = sorted(values.keys() - self._expected)
            raise KeyError(f"parameters missing: {missing}; not in the statement: {unknown}")
        return [values[name] for name in self.names]

    async def fetch(self, driver: Any, values: Mapping[str, Any]) -> list[Any]:
        """The rows, on an asyncpg connection."""
        rows: list[Any] = await driver.fetch(self.sql, *self.arguments(values))
        return rows

    async def execute(self, driver: Any, values: Mapping[str, Any]) -> None:
        """Run it on an asyncpg connection."""
        await driver.execute(self.sql, *self.arguments(values))


class _NoLock:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


class Database:
    """The engine and the session factory, with the write discipline above."""

    def __init__(
        self, url: str, timeout_seconds: float | None = None, **engine_kwargs: Any
    ) -> None:
        self.url = url
        self.engine = create_engine(url, timeout_seconds, **engine_kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries; whatever it started is rolled back on exit.

        An outage raises ``errors.DatabaseUnavailable`` (as in ``write``)."""
        with unavailable_as_domain_error():
            async with self._sessions() as session:
                yield session

    def sqlite3_connection(self) -> sqlite3.Connection:
        """A plain sqlite3 connection to this database's file, opened and configured as
        the engine's are, for a writer that must not wait on the event loop between its
        statements (the callback writer, the expiry sweep). Any thread, one at a time."""
        url_args, url_kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        args: list[Any] = list(url_args)
        kwargs: dict[str, Any] = {**url_kwargs, "check_same_thread": False}
        connection: sqlite3.Connection = sqlite3.connect(*args, **kwargs)
        configure_sqlite_connection(connection)
        return connection

    def write_lock(self) -> AbstractAsyncContextManager[None]:
        """Held by every writer in this process while it writes (SQLite allows one
        writer at a time; on PostgreSQL it is no lock at all)."""
        return self._write_lock or _NO_LOCK

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction, committed on success."""
        with unavailable_as_domain_error():
            async with self.write_lock(), self._sessions() as session:
                options = {"sqlite_begin": "IMMEDIATE"} if self.is_sqlite else {}
                await session.connection(execution_options=options)
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise

    async def dispose(self) -> None:
        await self.engine.dispose()
