"""A real PostgreSQL outage: every callback is still answered 200 fast and applied once later."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import _admin, running
from tests.factories import add_message
from tracker import db, models
from tracker.app import create_app
from tracker.domain import status
from tracker.reports import capability, ingest
from tracker.reports.spool import Spool
from tracker.settings import Settings

CALLBACKS = 1000
CONCURRENCY = 256


@pytest.fixture
def backend() -> str:
    """This test needs a server that can be taken away: PostgreSQL only."""
    return "postgresql"


async def _set_connections(database_url: str, *, allowed: bool) -> None:
    name = database_url.rsplit("/", 1)[1]
    await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
    if not allowed:
        await _admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"  # noqa: S608
        )


async def _count(database: db.Database, *where: object) -> int:
    async with database.read() as session:
        return int(await session.scalar(select(func.count()).where(*where)) or 0)  # type: ignore[arg-type]


async def test_callbacks_during_an_outage_are_acknowledged_and_applied_once(
    settings: Settings, database: db.Database, database_url: str
) -> None:
    """1,000 callbacks while the database refuses connections: all 200 in < 5 s, all applied."""
    ids = []
    for start in range(0, CALLBACKS, 100):
        ids += await asyncio.gather(
            *(
                add_message(database, provider_message_id=f"p-{n}")
                for n in range(start, start + 100)
            )
        )
    keys = settings.callback_keys()
    app = create_app(settings)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def post(http: httpx.AsyncClient, n: int) -> tuple[int, float]:
        url = capability.callback_url("", keys, ids[n])
        body = {"message_id": f"p-{n}", "contact": "254712345678", "status": "Delivered"}
        async with limit:
            started = time.perf_counter()
            response = await http.post(url, content=json.dumps(body))
            return response.status_code, time.perf_counter() - started

    async with running(app) as http:
        await database.dispose()
        await _set_connections(database_url, allowed=False)
        try:
            results = await asyncio.gather(*(post(http, n) for n in range(CALLBACKS)))
        finally:
            await _set_connections(database_url, allowed=True)
    assert [code for code, _ in results] == [200] * CALLBACKS
    assert max(elapsed for _, elapsed in results) < 5.0

    spool = Spool(settings.spool_path)
    assert spool.backlog() == CALLBACKS
    assert await ingest.replay(database, spool) == CALLBACKS
    assert await ingest.replay(database, spool) == 0
    delivered = models.Message.status == status.Status.DELIVERED
    assert await _count(database, delivered) == CALLBACKS
    assert await _count(database, models.CallbackReceipt.id.is_not(None)) == CALLBACKS
    assert await _count(database, models.MessageEvent.source == "callback") == CALLBACKS
