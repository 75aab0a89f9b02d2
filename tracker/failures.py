"""Judging a failed write of receipts: the database's fault, or the data's.

The callback writer and the replayer ask this after a batch failed: a systemic
failure (unreachable, too slow, locked) means "try again later, spool"; a
failure caused by what a receipt holds will fail the same way every time, so
the batch is split to find it; an integrity failure (a constraint) refuses it.
Takes SQLAlchemy's errors and the drivers' own (the writer runs statements on
the driver connection).
"""

from __future__ import annotations

import sqlite3

import asyncpg
from sqlalchemy import exc as sa_exc

# SQLSTATE classes that blame the database or the session, not the data sent:
# 08 connection, 28 authorization, 3D no such database, 40 rollback (deadlock,
# serialization), 42 syntax or access (a missing table: an unmigrated schema),
# 53 resources, 55 lock not available, 57 operator intervention (statement
# timeout, shutdown), 58 system error, XX internal error.
_SYSTEMIC_SQLSTATE_CLASSES = frozenset({"08", "28", "3D", "40", "42", "53", "55", "57", "58", "XX"})


def failure_is_systemic(error: BaseException) -> bool:
    """Whether applying receipts failed because of the database (try again later)
    rather than because of what one receipt holds (it will fail the same way)."""
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True  # SQLAlchemy's names for the driver errors below
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig or error
    if isinstance(error, _SYSTEMIC_ERRORS):
        return True  # unreachable, too slow, locked (SQLite), connection lost
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _SYSTEMIC_SQLSTATE_CLASSES


_SYSTEMIC_ERRORS = (
    OSError,
    TimeoutError,
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
    asyncpg.InterfaceError,
)
_INTEGRITY_ERRORS = (
    sa_exc.IntegrityError,
    sqlite3.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,  # UniqueViolationError and its kin
)


def failure_is_integrity(error: BaseException) -> bool:
    """Whether the database refused what a batch writes (a constraint, SQLSTATE
    class 23): a row-level refusal, never a sign that the database is away."""
    if isinstance(error, _INTEGRITY_ERRORS):
        return True
    sqlstate = getattr(getattr(error, "orig", None) or error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("23")
