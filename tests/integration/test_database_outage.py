"""A database outage at the API (issue 12, item 5): 503 fast, one warning line, no hang.

Stopped: a PostgreSQL URL on a port nothing listens on. Frozen: a TCP proxy to the
real server that stops passing bytes (a SIGSTOPped server, without stopping the
shared one). Locked: another connection holds the lock the API needs (both
databases). Bounds are generous multiples of the configured timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.conftest import SettingsFactory, running
from tests.integration.send_support import bearer, message
from tests.processes import free_port
from tracker.app import create_app

TIMEOUT_SECONDS = 1.0
BOUND_SECONDS = 8.0  # the answer comes well within this, whatever the database does
SOME_KEY = bearer("kt_" + "x" * 40)  # looked up in the database, so it needs one


class FreezableProxy:
    """Forwards TCP to the real PostgreSQL until frozen; then accepts and is silent."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        if self.frozen.is_set():
            await asyncio.sleep(3600)  # a frozen server: the socket stays open, silent
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.append(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while not self.frozen.is_set():
                chunk = await reader.read(65536)
                if not chunk or self.frozen.is_set():
                    break
                writer.write(chunk)
                await writer.drain()
        await asyncio.sleep(3600)  # frozen (or closed): hold until the proxy closes

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def outage_lines(captured: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in captured if e["event"] == "database_unavailable"]


def assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": "database unavailable"}
    assert int(response.headers["retry-after"]) > 0


async def api_calls(http: httpx.AsyncClient, headers: dict[str, str]) -> list[httpx.Response]:
    some_id = uuid.uuid4()
    return [
        await http.get(f"/v1/messages/{some_id}", headers=headers),
        await http.get("/v1/messages", headers=headers),
        await http.get("/v1/stats", headers=headers),
        await http.post("/v1/messages", json=message(), headers=headers),
        await http.post(f"/v1/messages/{some_id}/cancel", headers=headers),
    ]


async def test_item_5_a_stopped_postgresql_is_503_with_one_warning_line_per_request(
    make_settings: SettingsFactory,
) -> None:
    """Every API route answers 503 with Retry-After; one warning each, no traceback."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    settings = make_settings(database_url=url, database_timeout_seconds=TIMEOUT_SECONDS)
    async with running(create_app(settings)) as http:
        with capture_logs() as captured:
            responses = await api_calls(http, SOME_KEY)
    for response in responses:
        assert_503(response)
    lines = outage_lines(captured)
    assert len(lines) == len(responses)
    assert {line["log_level"] for line in lines} == {"warning"}
    assert all(line["error"] for line in lines)
    assert not [e for e in captured if e["event"] == "unhandled_exception" or "exc_info" in e]


@pytest.fixture
async def frozen_proxy() -> AsyncIterator[tuple[FreezableProxy, int]]:
    """A proxy to the test PostgreSQL server, and its port."""
    from tests.conftest import POSTGRES_URL, postgres_unavailable

    target = urlsplit(POSTGRES_URL)
    try:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        postgres_unavailable(str(exc) or type(exc).__name__)  # fails under CI=true
    await connection.close()
    proxy = FreezableProxy(target.hostname or "127.0.0.1", target.port or 5432)
    port = await proxy.start()
    try:
        yield proxy, port
    finally:
        await proxy.close()


async def scrape(http: httpx.AsyncClient) -> dict[str, float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }


async def test_item_5_a_frozen_postgresql_is_503_within_the_bound_and_probes_answer(
    make_settings: SettingsFactory,
    frozen_proxy: tuple[FreezableProxy, int],
    postgres_template: str,
) -> None:
    """API 503 within the bound; /readyz 503 within its 2 s budget; /metrics at once, with
    the values read before the freeze."""
    proxy, port = frozen_proxy
    url = f"postgresql://postgres@127.0.0.1:{port}/{postgres_template}"
    settings = make_settings(database_url=url, database_timeout_seconds=TIMEOUT_SECONDS)
    async with running(create_app(settings)) as http:
        assert (await http.get("/readyz")).status_code == 200  # pooled connections exist
        assert (await http.get("/v1/messages", headers=SOME_KEY)).status_code == 401
        before = await _wait_for_gauges(http)
        proxy.frozen.set()
        started = time.monotonic()
        assert_503(await http.get(f"/v1/messages/{uuid.uuid4()}", headers=SOME_KEY))
        assert time.monotonic() - started < BOUND_SECONDS
        started = time.monotonic()
        ready = await http.get("/readyz")
        assert (ready.status_code, time.monotonic() - started < BOUND_SECONDS) == (503, True)
        started = time.monotonic()
        after = await scrape(http)
        assert time.monotonic() - started < BOUND_SECONDS
    assert after["tracker_queue_depth"] == before["tracker_queue_depth"]
    assert after["tracker_metrics_database_age_seconds"] >= 0


async def _wait_for_gauges(http: httpx.AsyncClient) -> dict[str, float]:
    """The first scrape after the background refresher read the database."""
    for _ in range(100):
        samples = await scrape(http)
        if samples["tracker_metrics_database_up"] == 1:
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError("the gauges were never read")


async def _hold_the_write_lock(database_url: str) -> Callable[[], Any]:
    """Another connection holds what every write needs; returns the release."""
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")

        async def release_sqlite() -> None:
            connection.execute("ROLLBACK")
            connection.close()

        return release_sqlite
    raw = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    transaction = raw.transaction()
    await transaction.start()
    await raw.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")

    async def release_postgresql() -> None:
        await transaction.rollback()
        await raw.close()

    return release_postgresql


async def test_item_5_a_locked_database_makes_a_write_503_within_the_bound(
    make_settings: SettingsFactory, database_url: str, make_key: Callable[..., Any]
) -> None:
    """A write waiting on another connection's lock gives up after the timeout: 503."""
    key = bearer(await make_key("app", "send,read"))
    settings = make_settings(database_url=database_url, database_timeout_seconds=TIMEOUT_SECONDS)
    async with running(create_app(settings)) as http:
        release = await _hold_the_write_lock(database_url)
        try:
            with capture_logs() as captured:
                started = time.monotonic()
                response = await http.post("/v1/messages", json=message(), headers=key)
                elapsed = time.monotonic() - started
        finally:
            await release()
        assert_503(response)
        assert elapsed < BOUND_SECONDS
        assert len(outage_lines(captured)) == 1
        after = await http.post("/v1/messages", json=message(), headers=key)
        assert after.status_code == 202, after.text
