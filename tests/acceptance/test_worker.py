"""`tracker worker` processes: crash recovery and one active dispatcher per database."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import SettingsFactory
from tests.factories import add_message, fetch_message
from tests.processes import Running, free_port, started, stop
from tracker import db
from tracker.app import create_app
from tracker.domain import status
from tracker.sandbox import SandboxConfig
from tracker.sandbox.server import running_app, running_sandbox

CLIENT_ID, CLIENT_SECRET = "worker-test", "worker-test-secret"
HANG_NUMBER = "254700000504"  # accepted, then the answer hangs


@contextmanager
def provider_and_receiver(
    make_settings: SettingsFactory, database_url: str, tmp_path: Path
) -> Iterator[tuple[dict[str, str], str]]:
    """The sandbox and our callback receiver; yields the workers' environment."""
    config = SandboxConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        # Reports come late, so a killed worker leaves the message `sending`.
        callback_delay_seconds=30,
        failure_ratio=0.0,
        rate_limit_per_minute=6000,
        hang_seconds=4.0,
    )
    port = free_port()
    with running_sandbox(config) as sandbox_url:
        env = {
            "TRACKER_DATABASE_URL": database_url,
            "TRACKER_DATA_DIR": str(tmp_path / "data"),
            "TRACKER_KIMISMS_BASE_URL": sandbox_url,
            "TRACKER_KIMISMS_CLIENT_ID": CLIENT_ID,
            "TRACKER_KIMISMS_CLIENT_SECRET": CLIENT_SECRET,
            "TRACKER_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "TRACKER_RATE_LIMIT_PER_MINUTE": "6000",
            "TRACKER_LEASE_SECONDS": "12",
            "TRACKER_PROVIDER_CONNECT_TIMEOUT_SECONDS": "1",
            "TRACKER_PROVIDER_READ_TIMEOUT_SECONDS": "5",
            "TRACKER_LOG_FORMAT": "json",
        }
        settings = make_settings(
            database_url=database_url,
            public_url=env["TRACKER_PUBLIC_URL"],
            kimisms_base_url=sandbox_url,
        )
        with running_app(create_app(settings), port=port):
            yield env, sandbox_url


def sends_for(sandbox_url: str, message_id: uuid.UUID) -> int:
    sends = httpx.get(f"{sandbox_url}/sandbox/messages").json()
    return sum(1 for s in sends if s["idempotency_key"] == str(message_id))


def calls_for(sandbox_url: str, message_id: uuid.UUID) -> int:
    calls = httpx.get(f"{sandbox_url}/sandbox/calls").json()
    return sum(1 for c in calls if c.get("idempotency_key") == str(message_id))


async def wait_until(check: object, within: float = 30) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):  # type: ignore[arg-type]
            return True
        await asyncio.sleep(0.1)
    return False


def accepted(database_url: str, message_id: uuid.UUID) -> bool:
    """From a worker thread: has the provider's acceptance been recorded?"""

    async def check() -> bool:
        database = db.Database(database_url)
        try:
            return (await fetch_message(database, message_id)).accepted_at is not None
        finally:
            await database.dispose()

    return asyncio.run(check())


def leading(worker: Running) -> bool:
    return '"dispatcher_leading"' in worker.output()


async def test_a_worker_killed_mid_send_is_recovered_without_a_second_send(
    make_settings: SettingsFactory, database_url: str, database: db.Database, tmp_path: Path
) -> None:
    """SIGKILL while the provider holds the answer; after restart the lease expires, the
    retry reuses the Idempotency-Key, and the sandbox has exactly one send."""
    message_id = await add_message(database, status=status.Status.QUEUED, contact=HANG_NUMBER)
    with provider_and_receiver(make_settings, database_url, tmp_path) as (env, sandbox_url):
        with started("worker", env=env) as first:
            assert await wait_until(lambda: sends_for(sandbox_url, message_id) == 1)
            stop(first.process, signal.SIGKILL)
        assert (await fetch_message(database, message_id)).status == status.Status.SENDING
        with started("worker", env=env):
            assert await wait_until(lambda: calls_for(sandbox_url, message_id) >= 2, within=40)
            assert await wait_until(lambda: accepted(database_url, message_id), within=30)
        row = await fetch_message(database, message_id)
        assert row.status in {status.Status.PENDING, status.Status.DELIVERED}
        assert row.attempts == 2
        assert sends_for(sandbox_url, message_id) == 1


async def test_sigterm_lets_the_in_flight_send_finish_and_exits_cleanly(
    make_settings: SettingsFactory, database_url: str, database: db.Database, tmp_path: Path
) -> None:
    """SIGTERM: stop claiming, finish and record the in-flight send, exit 0."""
    message_id = await add_message(database, status=status.Status.QUEUED, contact=HANG_NUMBER)
    with provider_and_receiver(make_settings, database_url, tmp_path) as (env, sandbox_url):
        with started("worker", env=env) as worker:
            assert await wait_until(lambda: sends_for(sandbox_url, message_id) == 1)
            code = await asyncio.to_thread(stop, worker.process, signal.SIGTERM, 20)
        assert code == 0
        row = await fetch_message(database, message_id)
        assert row.accepted_at is not None
        assert '"dispatcher_stopped"' in worker.output()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_only_one_of_two_workers_sends_and_the_other_takes_over(
    make_settings: SettingsFactory,
    database_url: str,
    database: db.Database,
    tmp_path: Path,
    backend: str,
) -> None:
    """Advisory lock: one leader, one standby; killing the leader promotes the standby."""
    with contextlib.ExitStack() as stack:
        env, sandbox_url = stack.enter_context(
            provider_and_receiver(make_settings, database_url, tmp_path)
        )
        first = stack.enter_context(started("worker", env=env))
        second = stack.enter_context(started("worker", env=env))
        assert await wait_until(lambda: leading(first) != leading(second))
        leader, standby = (first, second) if leading(first) else (second, first)
        assert await wait_until(lambda: '"dispatcher_standby"' in standby.output())
        before = await add_message(database, status=status.Status.QUEUED)
        assert await wait_until(lambda: sends_for(sandbox_url, before) == 1)
        assert not leading(standby)
        stop(leader.process, signal.SIGKILL)
        assert await wait_until(lambda: leading(standby), within=15)
        after = await add_message(database, status=status.Status.QUEUED)
        assert await wait_until(lambda: sends_for(sandbox_url, after) == 1)
