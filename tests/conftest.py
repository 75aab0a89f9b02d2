"""Shared fixtures: real databases for every test that needs one.

Each database test runs twice, on SQLite (a copy of a migrated template file)
and on PostgreSQL (a database cloned from a migrated template with
``CREATE DATABASE ... TEMPLATE``), never a mock of our own database.
With ``CI=true`` an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import structlog
from starlette.applications import Starlette

from tracker import auth, db, migrate
from tracker.app import create_app
from tracker.settings import Settings

POSTGRES_URL = os.environ.get(
    "TRACKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Tests that never call logs.configure() log through structlog's defaults, whose
# console renderer draws rich tracebacks with every frame's locals: seconds on
# the event loop for one asyncpg error. The service itself formats tracebacks
# as plain text (format_exc_info), so the tests do the same.
structlog.configure(
    processors=[
        *structlog.get_config()["processors"][:-1],
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
    ]
)


def postgres_url(database: str) -> str:
    """The server URL with another database name."""
    base = POSTGRES_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def blocking_admin(statement: str) -> None:
    """Run an admin statement from sync code, even while an event loop runs."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _admin(statement)).result()


def postgres_unavailable(reason: str) -> None:
    message = f"PostgreSQL at {POSTGRES_URL} is unreachable: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    name = f"tracker_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        blocking_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        postgres_unavailable(str(exc) or type(exc).__name__)
    try:
        migrate.upgrade(db_async_url(postgres_url(name)))
        yield name
    finally:
        blocking_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def db_async_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A fresh, migrated database of the test's backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "tracker.db"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template_name: str = request.getfixturevalue("postgres_template")
    name = f"tracker_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    try:
        yield db_async_url(postgres_url(name))
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[db.Database]:
    database = db.Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SettingsFactory:
    """Settings isolated from the developer's environment, with overrides."""
    for name in list(os.environ):
        if name.startswith("TRACKER_") and name != "TRACKER_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "log_format": "json"}
        values.update(overrides)
        return Settings.load(**values)

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return make_settings(database_url=database_url)


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app in-process, with its lifespan run."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracker.test") as client:
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(settings)) as http:
        yield http


@pytest.fixture
def make_key(database: db.Database) -> Callable[..., Any]:
    """Create an API key with the given scopes; returns the key."""

    async def make(name: str = "app", scopes: str = "send,read") -> str:
        return await auth.create_key(database, name, auth.parse_scopes(scopes))

    return make
