"""The migrations build exactly the schema the models describe, both ways."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from tests import conftest
from tracker import clock, db, migrate, models
from tracker.settings import Settings


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, models.Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


@pytest.fixture
async def empty_database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """An empty database (no schema at all) of the test's backend."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    request.getfixturevalue("postgres_template")  # fails or skips if the server is down
    name = f"tracker_empty_{uuid.uuid4().hex[:10]}"
    await conftest._admin(f'CREATE DATABASE "{name}"')
    try:
        yield conftest.db_async_url(conftest.postgres_url(name))
    finally:
        await conftest._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_builds_the_models_schema_and_downgrade_removes_it(empty_database_url: str) -> None:
    """upgrade head on an empty database matches the models; downgrade base empties it."""

    async def inspect_with(check: Callable[[Connection], object]) -> object:
        database = db.Database(empty_database_url)
        try:
            async with database.engine.connect() as connection:
                return await connection.run_sync(check)
        finally:
            await database.dispose()

    migrate.upgrade(empty_database_url)
    assert asyncio.run(inspect_with(_differences)) == []
    assert asyncio.run(inspect_with(_tables)) == {
        t.name for t in models.Base.metadata.sorted_tables
    }
    migrate.downgrade(empty_database_url, "base")
    assert asyncio.run(inspect_with(_tables)) == set()


def test_there_is_a_single_head() -> None:
    """The migration history is linear, so `db upgrade` is unambiguous."""
    assert migrate.head_revision() is not None


def test_settings_default_database_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    """With no TRACKER_DATABASE_URL the embedded SQLite file lives in TRACKER_DATA_DIR."""
    settings = Settings.load(data_dir=tmp_path)
    assert settings.async_database_url == f"sqlite+aiosqlite:///{tmp_path / 'tracker.db'}"


OLD_EVENTS = {  # detail the dispatcher wrote before 0002 -> the outcome backfilled
    "attempt 1: rate limited by KIMISMS; retry at 2026-11-30T10:00:00+00:00": "rate_limited",
    "attempt 1: KIMISMS server error 503; retry at 2026-11-30T10:00:00+00:00": "provider_error",
    "attempt 2: KIMISMS timed out (ReadTimeout); retry at 2026-11-30T10:00:00+00:00": "no_answer",
    "attempt 3: gave up: cannot reach KIMISMS (ConnectError) (after 3 attempts)": "no_answer",
    "attempt 1: refused by KIMISMS: sender_name: Sender ID not found": "rejected",
    "attempt 1: accepted by KIMISMS": "accepted",
    "attempt 1: KIMISMS answered 403; retry at 2026-11-30T10:00:00+00:00": "account_unavailable",
    "attempt 0: gave up: retries stopped: the validity ran out": None,
}


def test_item_15_upgrade_backfills_outcomes_and_requeues_retry_waits(
    empty_database_url: str,
) -> None:
    """Item 15 (and 6): 0002 fills message_events.outcome from the old detail text, and a
    message left sending only to wait for a retry (no lease) becomes queued."""
    migrate.upgrade(empty_database_url, "0001")
    waiting, leased = uuid.uuid4(), uuid.uuid4()

    async def seed() -> None:
        database = db.Database(empty_database_url)
        try:
            async with database.engine.begin() as connection:
                for message_id, lease in ((waiting, None), (leased, clock.utcnow())):
                    await connection.execute(
                        sa.insert(models.Message).values(
                            id=message_id,
                            client="app",
                            sender_name="KIMISMS",
                            contact="254712345678",
                            segments=1,
                            encoding="gsm7",
                            priority=1,
                            status="sending",
                            rank=1,
                            attempts=1,
                            lease_until=lease,
                            created_at=clock.utcnow(),
                            updated_at=clock.utcnow(),
                        )
                    )
                for detail in OLD_EVENTS:
                    await connection.execute(
                        sa.text(
                            "INSERT INTO message_events (message_id, source, detail, created_at)"
                            " VALUES (:m, 'dispatcher', :d, :t)"
                        ).bindparams(
                            sa.bindparam("m", type_=sa.Uuid()),
                            sa.bindparam("t", type_=db.UTCDateTime()),
                        ),
                        {"m": waiting, "d": detail, "t": clock.utcnow()},
                    )
        finally:
            await database.dispose()

    async def read() -> tuple[dict[str | None, str | None], list[str]]:
        database = db.Database(empty_database_url)
        try:
            async with database.read() as session:
                e, m = models.MessageEvent, models.Message
                outcomes = dict((await session.execute(sa.select(e.detail, e.outcome))).all())
                statuses = await session.scalars(
                    sa.select(m.status).where(m.id.in_([waiting, leased])).order_by(m.lease_until)
                )
                return outcomes, list(statuses)
        finally:
            await database.dispose()

    asyncio.run(seed())
    migrate.upgrade(empty_database_url)
    outcomes, statuses = asyncio.run(read())
    assert outcomes == OLD_EVENTS
    assert sorted(statuses) == ["queued", "sending"]
