"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tracker import logs, migrate
from tracker.services import services_of

log = logs.get_logger(__name__)
READINESS_TIMEOUT_SECONDS = 2.0


async def healthz(_request: Request) -> JSONResponse:
    """Alive: the process answers. Says nothing about the database on purpose."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready: the database answers and its schema is the one this code expects."""
    database = services_of(request).database
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS), database.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            current = await migrate.current_revision(conn)
    except Exception as exc:  # any failure here means "not ready", with a reason
        log.warning("readiness_failed", error=type(exc).__name__)
        return JSONResponse({"status": "unavailable", "reason": "database unreachable"}, 503)
    head = migrate.head_revision()
    if current != head and (current is None or migrate.is_known_revision(current)):
        reason = f"schema at {current or 'nothing'}, expected {head}: run `tracker db upgrade`"
        return JSONResponse({"status": "unavailable", "reason": reason}, 503)
    # A revision this code does not know is a newer one (a rollout in progress):
    # migrations are additive, so the old code keeps serving until it is replaced.
    return JSONResponse({"status": "ready", "schema": current})


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
