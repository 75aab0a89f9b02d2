"""The migrations build exactly the schema the models describe, both ways."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from tests import conftest
from tracker import db, migrate, models
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
