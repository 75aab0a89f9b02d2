"""Issue 12, item 18: the spool replay streams its files and keeps file work off the loop."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.integration.test_callbacks import report
from tracker import clock, db, models
from tracker.clients import records
from tracker.domain import segments, status
from tracker.reports import ingest, reading
from tracker.reports.spool import Spool

MESSAGES = 400
WORDS = ("Sent", "Buffered", "Delivered")


async def add_messages(database: db.Database, count: int) -> list[uuid.UUID]:
    """``count`` pending messages in one transaction, provider ids ``p-0`` onwards."""
    rows = [
        models.Message(
            id=models.new_id(),
            client="app",
            sender_name="KIMISMS",
            contact="254712345678",
            network="Safaricom",
            body="Your code is 123456",
            segments=1,
            encoding=segments.Encoding.GSM7.value,
            priority=status.PRIORITY_ORDER[status.Priority.NORMAL],
            status=status.Status.PENDING.value,
            rank=status.RANK[status.Status.PENDING],
            provider_message_id=f"p-{n}",
            next_attempt_at=clock.utcnow(),
        )
        for n in range(count)
    ]
    async with database.write() as session:
        await records.ensure(session, "app")
        session.add_all(rows)
    return [row.id for row in rows]


def spool_lines(ids: list[uuid.UUID]) -> list[str]:
    """Three reports per message, interleaved as a burst would spool them."""
    lines = []
    for word in WORDS:
        for n, message_id in enumerate(ids):
            body = json.dumps(report(word, message_id=f"p-{n}"))
            receipt = reading.Receipt(message_id, body, "127.0.0.1", clock.utcnow())
            lines.append(json.dumps(receipt.to_json()))
    return lines


def recording(calls: list[int], real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, noting the thread of each call."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.get_ident())
        return real(*args, **kwargs)

    return wrapper


async def test_item_18_a_large_spool_replays_once_with_its_file_work_off_the_loop(
    database: db.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 18: 1,200 receipts and two unreadable lines replay exactly once; every parse of a
    line and every fsync (the quarantine's) ran in a thread, not on the event loop."""
    ids = await add_messages(database, MESSAGES)
    lines = spool_lines(ids)
    data = [line.encode() for line in lines]
    data.insert(100, b'{"message_id": "torn')
    data.insert(900, b"\xff not UTF-8")
    spool = Spool(tmp_path / "spool.jsonl")
    spool.path.write_bytes(b"".join(line + b"\n" for line in data))
    parses: list[int] = []
    fsyncs: list[int] = []
    real_from_json = reading.Receipt.from_json.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        reading.Receipt, "from_json", classmethod(recording(parses, real_from_json))
    )
    monkeypatch.setattr(os, "fsync", recording(fsyncs, os.fsync))
    assert await ingest.replay(database, spool, batch_size=100) == 3 * MESSAGES
    loop_thread = threading.get_ident()
    assert len(parses) == 3 * MESSAGES  # the unreadable lines never reach from_json
    assert loop_thread not in parses
    assert len(fsyncs) == 2
    assert loop_thread not in fsyncs
    assert spool.backlog() == 0
    assert spool.quarantined() == 2
    async with database.read() as session:
        delivered = await session.scalar(
            select(func.count()).where(models.Message.status == status.Status.DELIVERED)
        )
        stored = await session.scalar(select(func.count()).select_from(models.CallbackReceipt))
    assert (delivered, stored) == (MESSAGES, 3 * MESSAGES)
    assert await ingest.replay(database, spool) == 0


def test_item_18_the_spool_is_read_in_bounded_batches_not_whole(tmp_path: Path) -> None:
    """Item 18: reading a 6 MB spool holds one batch at a time: the peak allocation
    stays far below the file's size."""
    spool = Spool(tmp_path / "spool.jsonl")
    line = json.dumps(
        reading.Receipt(uuid.uuid4(), json.dumps(report()), None, clock.utcnow()).to_json()
    )
    with spool.path.open("w") as handle:
        for _ in range(20_000):
            handle.write(line + "\n")
    size = spool.path.stat().st_size
    assert size > 5_000_000
    batches = spool.batches(spool.path, 100)
    tracemalloc.start()
    try:
        counts = [len(batch) for batch in batches]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts == [100] * 200
    assert peak < size / 10
