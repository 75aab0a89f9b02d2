"""The real provider loop for tests: the sandbox over HTTP, the tracker's receiver, the dispatcher.

Tests that need provider answers (429s, 500s, timeouts, refusals) get them from
the sandbox's magic numbers, never from a mock of the provider.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final

import httpx

from tests.conftest import SettingsFactory
from tests.factories import fetch_message
from tests.processes import free_port
from tracker import db, models
from tracker.app import create_app, provider_client
from tracker.dispatch import dispatcher
from tracker.domain import status
from tracker.sandbox import SandboxConfig
from tracker.sandbox.server import running_app, running_sandbox
from tracker.settings import Settings

CLIENT_ID: Final = "tracker-test"
CLIENT_SECRET: Final = "tracker-test-secret"
FINAL: Final = frozenset(s.value for s in status.FINAL)


def sandbox_config(**overrides: Any) -> SandboxConfig:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "callback_delay_seconds": 0.05,
        "failure_ratio": 0.0,
        "rate_limit_per_minute": 6000,
        "hang_seconds": 1.5,
        "slow_response_seconds": 0.2,
    }
    values.update(overrides)
    return SandboxConfig(**values)


@contextmanager
def loop(
    make_settings: SettingsFactory, database_url: str, config: SandboxConfig, **overrides: Any
) -> Iterator[tuple[Settings, str]]:
    """The sandbox and the tracker's receiver, both over HTTP on loopback."""
    port = free_port()
    with running_sandbox(config) as sandbox_url:
        values: dict[str, Any] = {
            "database_url": database_url,
            "kimisms_base_url": sandbox_url,
            "kimisms_client_id": CLIENT_ID,
            "kimisms_client_secret": CLIENT_SECRET,
            "public_url": f"http://127.0.0.1:{port}",
            "rate_limit_per_minute": 6000,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "provider_read_timeout_seconds": 0.75,
        }
        values.update(overrides)
        settings = make_settings(**values)
        with running_app(create_app(settings), port=port):
            yield settings, sandbox_url


@asynccontextmanager
async def dispatching(settings: Settings, database: db.Database) -> AsyncIterator[None]:
    async with provider_client(settings) as http:
        sender = dispatcher.create(settings, database, http)
        task = asyncio.create_task(sender.run())
        try:
            yield
        finally:
            sender.stop()
            await asyncio.wait_for(task, 30)


async def wait_for(
    database: db.Database,
    ids: list[uuid.UUID],
    done: Callable[[models.Message], bool],
    within: float = 20,
) -> list[models.Message]:
    deadline = time.monotonic() + within
    while True:
        rows = [await fetch_message(database, i) for i in ids]
        if all(done(row) for row in rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


def is_final(row: models.Message) -> bool:
    return row.status in FINAL


def sandbox_sends(sandbox_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{sandbox_url}/sandbox/messages")
    sends: list[dict[str, Any]] = response.json()
    return sends


def sandbox_calls(sandbox_url: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{sandbox_url}/sandbox/calls").json()
    return calls


def sends_per_key(sandbox_url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for send in sandbox_sends(sandbox_url):
        counts[send["idempotency_key"]] = counts.get(send["idempotency_key"], 0) + 1
    return counts


def settled(row: models.Message) -> bool:
    """Accepted or final: nothing more will be sent."""
    return row.status == status.Status.PENDING.value or row.status in FINAL
