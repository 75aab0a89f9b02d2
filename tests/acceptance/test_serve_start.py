"""What `serve` and `worker` check at start (issue 12, items 9, 10 and 13)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SettingsFactory, blocking_admin, postgres_url
from tests.processes import free_port, run_tracker, started
from tracker import db, migrate, startup

CREDENTIALS = {"TRACKER_KIMISMS_CLIENT_ID": "id", "TRACKER_KIMISMS_CLIENT_SECRET": "s3cret"}


@pytest.fixture
def empty_database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a database with no schema at all, of the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("postgres_template")  # skips (or fails in CI) without a server
    name = f"tracker_start_{uuid.uuid4().hex[:10]}"
    blocking_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url(name)
    finally:
        blocking_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_for(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_DATA_DIR": str(tmp_path / "data"),
        "TRACKER_LOG_FORMAT": "json",
        **CREDENTIALS,
    }


def schema_revision(database_url: str) -> str | None:
    async def read() -> str | None:
        database = db.Database(database_url)
        try:
            async with database.engine.connect() as connection:
                return await migrate.current_revision(connection)
        finally:
            await database.dispose()

    return asyncio.run(read())


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_item_9_serve_and_worker_migrate_an_empty_sqlite_database_themselves(
    empty_database: str, tmp_path: Path, command: str
) -> None:
    """The embedded default needs no `tracker db upgrade`: the schema is at head, no errors."""
    port = free_port()
    args = ("serve", "--port", str(port)) if command == "serve" else ("worker",)
    with started(*args, env=env_for(empty_database, tmp_path)) as process:
        deadline = time.monotonic() + 30
        while '"dispatcher_leading"' not in process.output():
            assert process.process.poll() is None, process.output()[-2000:]
            assert time.monotonic() < deadline, process.output()[-2000:]
            time.sleep(0.1)
        if command == "serve":
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        time.sleep(1.5)  # the dispatcher's sweeps and claims have run
    assert "no such table" not in process.output()
    async_url = empty_database.replace("sqlite://", "sqlite+aiosqlite://", 1)
    assert schema_revision(async_url) == migrate.head_revision()


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_item_9_serve_and_worker_refuse_an_unmigrated_postgresql_database_in_one_line(
    empty_database: str, tmp_path: Path, command: str
) -> None:
    """No schema on PostgreSQL: exit 2 with one stderr line naming `tracker db upgrade`."""
    args = ("serve", "--port", str(free_port())) if command == "serve" else ("worker",)
    result = run_tracker(*args, env=env_for(empty_database, tmp_path), timeout=30)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "`tracker db upgrade`" in line
    assert "no such table" not in result.stdout + result.stderr
    async_url = empty_database.replace("postgresql://", "postgresql+asyncpg://", 1)
    assert schema_revision(async_url) is None  # refused, not migrated behind the operator


def test_item_10_serve_sandbox_takes_the_configured_rate_limit(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """`serve --sandbox` with a rate of 2/min: the sandbox answers the third call with 429."""
    settings = make_settings(rate_limit_per_minute=2, database_url=f"sqlite:///{tmp_path}/t.db")
    with contextlib.ExitStack() as stack:
        sandboxed = startup.with_sandbox(settings, stack, "127.0.0.1", 8000, free_port())
        url = f"{sandboxed.kimisms_base_url}/api/generate-token"
        codes = [httpx.post(url, json={}).status_code for _ in range(3)]
    assert 429 not in codes[:2]
    assert codes[2] == 429


@pytest.mark.parametrize("how", ["host", "fd"])
def test_item_13_the_development_callback_key_is_refused_off_loopback(
    tmp_path: Path, how: str
) -> None:
    """No TRACKER_CALLBACK_SECRETS and a non-loopback listener: one line naming it, exit 2."""
    env = env_for(f"sqlite:///{tmp_path / 't.db'}", tmp_path)
    with socket.socket() as sock:
        if how == "host":
            args: tuple[str, ...] = ("serve", "--host", "0.0.0.0", "--port", str(free_port()))  # noqa: S104
        else:
            sock.bind(("0.0.0.0", 0))  # noqa: S104 - the case under test
            sock.listen()
            args = ("serve", "--fd", str(sock.fileno()))
        result = run_tracker(*args, env=env, timeout=30, pass_fds=(sock.fileno(),))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "TRACKER_CALLBACK_SECRETS" in line
    assert not (tmp_path / "t.db").exists()  # refused before anything else


def test_item_13_with_callback_secrets_serve_listens_on_every_interface(tmp_path: Path) -> None:
    """The same start with a real key: it serves (reached here on loopback)."""
    port = free_port()
    env = {
        **env_for(f"sqlite:///{tmp_path / 't.db'}", tmp_path),
        "TRACKER_CALLBACK_SECRETS": "k1:" + "x" * 32,
    }
    ready = f"http://127.0.0.1:{port}/readyz"
    args = ("serve", "--no-dispatcher", "--host", "0.0.0.0", "--port", str(port))  # noqa: S104
    with started(*args, env=env, ready_url=ready):
        assert httpx.get(ready).status_code == 200
