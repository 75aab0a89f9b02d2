"""Item 17: errors caught at the dispatcher's and the callback receiver's loop edges are
logged with their traceback (real database failures, no mocks)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from tests.conftest import SettingsFactory
from tests.factories import add_message
from tests.integration.test_callbacks import PROVIDER_ID, report
from tests.processes import free_port
from tracker import clock, db
from tracker.dispatch import dispatcher
from tracker.domain import status
from tracker.reports import ingest, reading
from tracker.reports.spool import Spool

Entries = list[MutableMapping[str, Any]]


async def _until(entries: Entries, done: Callable[[set[str]], bool], within: float = 15) -> None:
    deadline = time.monotonic() + within
    while True:
        if done({entry["event"] for entry in entries}) or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def _only(entries: Entries, name: str) -> MutableMapping[str, Any]:
    return next(entry for entry in entries if entry["event"] == name)


async def test_item_17_dispatcher_edges_log_the_traceback(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """Item 17: a sweep and a dispatch cycle that fail on the database log exc_info."""
    cascade = "" if database.is_sqlite else " CASCADE"
    async with database.write() as session:  # a real failure of every query on messages
        await session.execute(text(f"DROP TABLE messages{cascade}"))
    settings = make_settings(
        database_url=database_url, kimisms_base_url=f"http://127.0.0.1:{free_port()}"
    )
    async with httpx.AsyncClient(base_url=settings.kimisms_base_url) as http:
        sender = dispatcher.create(settings, database, http)
        with capture_logs() as entries:
            task = asyncio.create_task(sender.run())
            wanted = {"dispatcher_sweep_failed", "dispatcher_cycle_failed"}
            await _until(entries, wanted.issubset)
            sender.stop()
            await asyncio.wait_for(task, 10)
    for name in ("dispatcher_sweep_failed", "dispatcher_cycle_failed"):
        entry = _only(entries, name)
        assert entry["exc_info"] is True, name
        assert entry["log_level"] == "warning"


async def test_item_17_callback_writer_and_replayer_edges_log_the_traceback(
    database: db.Database, tmp_path: Path
) -> None:
    """Item 17: the group commit and the replayer, failing on the database, log exc_info."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    receipt = reading.Receipt(message_id, json.dumps(report()), "127.0.0.1", clock.utcnow())
    broken = db.Database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    ingester = ingest.Ingester(broken, Spool(tmp_path / "spool.jsonl"), 1.0)
    try:
        with capture_logs() as entries:
            await ingester.start(replay_interval=0.05)
            assert await ingester.submit(receipt) == ingest.SPOOLED
            wanted = {"callback_db_unavailable", "callback_replay_deferred"}
            await _until(entries, wanted.issubset)
    finally:
        await ingester.stop()
        await broken.dispose()
    for name in ("callback_db_unavailable", "callback_replay_deferred"):
        entry = _only(entries, name)
        assert entry["exc_info"] is True, name
    assert await ingest.replay(database, ingester.spool) == 1  # nothing was lost
    async with database.read() as session:
        stored = await session.scalar(
            text("SELECT status FROM messages WHERE provider_message_id = :p"), {"p": PROVIDER_ID}
        )
    assert stored == status.Status.DELIVERED


async def test_an_outage_logs_its_traceback_once_not_on_every_failed_batch(
    database: db.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A traceback costs the event loop milliseconds: the writer and the replayer log it
    when an outage starts, and later failures of the same outage only as one line."""
    monkeypatch.setattr(ingest, "BREAKER_SECONDS", 0.05)
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    broken = db.Database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    ingester = ingest.Ingester(broken, Spool(tmp_path / "spool.jsonl"), 1.0)
    try:
        with capture_logs() as entries:
            await ingester.start(replay_interval=0.05)
            for _ in range(3):
                receipt = reading.Receipt(message_id, json.dumps(report()), "::1", clock.utcnow())
                assert await ingester.submit(receipt) == ingest.SPOOLED
                await asyncio.sleep(0.1)  # past the breaker: the next batch tries again
            await _until(
                entries,
                lambda _: sum(e["event"] == "callback_replay_deferred" for e in entries) >= 3,
            )
    finally:
        await ingester.stop()
        await broken.dispose()
    for name in ("callback_db_unavailable", "callback_replay_deferred"):
        flags = [entry["exc_info"] for entry in entries if entry["event"] == name]
        assert len(flags) >= 2, name
        assert flags[0] is True, name
        assert not any(flags[1:]), name
