"""Scratch databases for benchmarks: migrated, seeded, and removed afterwards."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import insert

from tracker import clock, db, migrate, models
from tracker.clients import records
from tracker.domain import status

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.asynccontextmanager
async def scratch_database(backend: str, postgres_url: str) -> AsyncIterator[str]:
    """A migrated, empty database; yields its async SQLAlchemy URL."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tracker-bench-") as workdir:
            url = f"sqlite+aiosqlite:///{Path(workdir) / 'bench.db'}"
            migrate.upgrade(url)
            yield url
        return
    name = f"tracker_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = postgres_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        url = f"{url}/{name}"
        migrate.upgrade(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def plain_url(async_url: str) -> str:
    """The URL as an operator writes it (TRACKER_DATABASE_URL accepts both)."""
    return async_url.replace("+aiosqlite", "").replace("+asyncpg", "")


async def seed_pending(url: str, count: int, chunk: int = 5000) -> list[uuid.UUID]:
    """``count`` messages accepted by the provider (``pending``), provider ids p-0.. ."""
    database = db.Database(url)
    now = clock.utcnow()
    ids = [models.new_id() for _ in range(count)]
    try:
        async with database.write() as session:
            await records.ensure(session, "bench")  # every message's client has a row (FK)
        for start in range(0, count, chunk):
            rows: list[dict[str, Any]] = [
                {
                    "id": ids[n],
                    "client": "bench",
                    "sender_name": "KIMISMS",
                    "contact": "254712345678",
                    "body": f"benchmark message {n}",
                    "segments": 1,
                    "encoding": "gsm7",
                    "priority": 1,
                    "status": status.Status.PENDING.value,
                    "rank": status.RANK[status.Status.PENDING],
                    "provider_message_id": f"p-{n}",
                    "attempts": 1,
                    "created_at": now,
                    "updated_at": now,
                    "submitted_at": now,
                    "accepted_at": now,
                }
                for n in range(start, min(count, start + chunk))
            ]
            async with database.write() as session:
                await session.execute(insert(models.Message), rows)
    finally:
        await database.dispose()
    return ids
