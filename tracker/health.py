"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tracker import db, logs, migrate
from tracker.services import services_of

log = logs.get_logger(__name__)
READINESS_TIMEOUT_SECONDS = 2.0


async def healthz(_request: Request) -> JSONResponse:
    """Alive: the process answers. Says nothing about the database on purpose."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready: the database answers and its schema is the one this code expects.

    Answered within ``READINESS_TIMEOUT_SECONDS`` whatever the database does: a
    check still running then is left to end (or time out) on its own, since
    cancelling a connection to a frozen server waits for that server too.
    """
    database = services_of(request).database
    check = asyncio.create_task(_schema_revision(database))
    done, _ = await asyncio.wait({check}, timeout=READINESS_TIMEOUT_SECONDS)
    error = "TimeoutError" if not done else _error_name(check)
    if error is not None:
        check.cancel()
        _PENDING.add(check)
        check.add_done_callback(_forget)
        log.warning("readiness_failed", error=error)
        return JSONResponse({"status": "unavailable", "reason": "database unreachable"}, 503)
    current = check.result()
    head = migrate.head_revision()
    if current != head and (current is None or migrate.is_known_revision(current)):
        reason = f"schema at {current or 'nothing'}, expected {head}: run `tracker db upgrade`"
        return JSONResponse({"status": "unavailable", "reason": reason}, 503)
    # A revision this code does not know is a newer one (a rollout in progress):
    # migrations are additive, so the old code keeps serving until it is replaced.
    return JSONResponse({"status": "ready", "schema": current})


_PENDING: set[asyncio.Task[str | None]] = set()  # checks past their budget, until they end


def _forget(task: asyncio.Task[str | None]) -> None:
    _PENDING.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: its failure was already reported


def _error_name(check: asyncio.Task[str | None]) -> str | None:
    error = check.exception()
    return None if error is None else type(error.__cause__ or error).__name__


async def _schema_revision(database: db.Database) -> str | None:
    async with database.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        return await migrate.current_revision(conn)


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
