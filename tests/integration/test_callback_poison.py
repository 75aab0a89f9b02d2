"""Poison callbacks: text a database cannot store never trips the breaker or stalls the spool."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from tests.factories import add_message, fetch_message
from tests.integration.test_callbacks import PROVIDER_ID, post, report
from tracker import clock, db, errors, metrics, models
from tracker.domain import status
from tracker.reports import ingest, plan, reading, statements
from tracker.reports.spool import Spool
from tracker.settings import Settings

# Each is a body the group commit used to fail on (PostgreSQL refuses NUL in
# text; no UTF-8 text holds a lone surrogate; "[[[[..." overflows the parser).
POISON_BODIES = {
    "nul_in_description": json.dumps(report(description="Delivered\u0000")).encode(),
    "nul_in_status": json.dumps(report(status="Deliv\u0000ered")).encode(),
    "nul_in_an_extra_field": json.dumps(report(extra={"k\u0000": 1})).encode(),
    "raw_nul_byte": b'{"status": "Delivered"}\x00',
    "lone_surrogate": json.dumps(report(description="\ud800")).encode(),
    "nested_too_deep": b"[" * 5000 + b"]" * 5000,
}


async def receipts_of(database: db.Database, message_id: uuid.UUID) -> list[tuple[str, str]]:
    async with database.read() as session:
        rows = await session.execute(
            select(models.CallbackReceipt.outcome, models.CallbackReceipt.body)
            .where(models.CallbackReceipt.message_id == message_id)
            .order_by(models.CallbackReceipt.id)
        )
    return [(row.outcome, row.body) for row in rows]


async def statuses(database: db.Database, ids: list[uuid.UUID]) -> list[str]:
    return [(await fetch_message(database, i)).status for i in ids]


def receipt_for(message_id: uuid.UUID, body: str | bytes) -> reading.Receipt:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return reading.Receipt(message_id, text, "127.0.0.1", clock.utcnow())


@pytest.mark.parametrize("name", list(POISON_BODIES))
async def test_an_unstorable_body_is_recorded_as_malformed_without_tripping_the_breaker(
    client: httpx.AsyncClient, settings: Settings, database: db.Database, name: str
) -> None:
    """400 like any malformed report, the raw body kept (NUL escaped), nothing spooled."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    with capture_logs() as captured:
        response = await post(client, settings, message_id, POISON_BODIES[name])
        after = await post(client, settings, message_id, report())
    assert response.status_code == 400
    assert response.json() == {"detail": "not a delivery report"}
    assert after.json()["outcome"] == "applied"  # the database path is still open
    events = [e["event"] for e in captured]
    assert "callback_db_unavailable" not in events
    assert Spool(settings.spool_path).backlog() == 0
    [(outcome, body), _] = await receipts_of(database, message_id)
    assert outcome == "malformed"
    assert "\x00" not in body
    assert body == POISON_BODIES[name].decode().replace("\x00", "\\u0000")


async def test_poison_reports_in_a_group_commit_leave_the_others_applied(
    database: db.Database,
) -> None:
    """One transaction, good and NUL-bearing reports interleaved: the good ones all apply."""
    ids = [await add_message(database, provider_message_id=f"p-{n}") for n in range(6)]
    bodies = [
        json.dumps(report(message_id=f"p-{n}", description="a\u0000b" if n % 2 else "ok"))
        for n in range(6)
    ]
    async with database.write() as session:
        outcomes = await statements.apply_receipts(
            session, [receipt_for(i, b) for i, b in zip(ids, bodies, strict=True)]
        )
    assert outcomes == [plan.Outcome.APPLIED, plan.Outcome.MALFORMED] * 3
    assert await statuses(database, ids) == ["delivered", "pending"] * 3


async def test_concurrent_callbacks_with_a_poison_one_are_all_answered_without_spooling(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Through the group-commit writer: the good callbacks apply, the poison one gets 400."""
    ids = [await add_message(database, provider_message_id=f"p-{n}") for n in range(40)]
    bodies: list[Any] = [report(message_id=f"p-{n}") for n in range(40)]
    bodies[7] = report(message_id="p-7", description="\u0000")
    bodies[23] = POISON_BODIES["raw_nul_byte"]
    with capture_logs() as captured:
        responses = await asyncio.gather(
            *(post(client, settings, i, b) for i, b in zip(ids, bodies, strict=True))
        )
    codes = [r.status_code for r in responses]
    assert codes == [400 if n in {7, 23} else 200 for n in range(40)]
    assert "callback_db_unavailable" not in [e["event"] for e in captured]
    expected = ["pending" if n in {7, 23} else "delivered" for n in range(40)]
    assert await statuses(database, ids) == expected


async def test_a_spool_written_before_the_fix_replays_its_nul_receipts_as_malformed(
    database: db.Database, tmp_path: Path
) -> None:
    """Receipts spooled when NUL broke the commit are no longer poison: all of them replay."""
    ids = [await add_message(database, provider_message_id=f"p-{n}") for n in range(3)]
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append(
        [
            receipt_for(ids[0], json.dumps(report(message_id="p-0"))),
            receipt_for(ids[1], json.dumps(report(message_id="p-1", description="\u0000"))),
            receipt_for(ids[1], '{"status": "Delivered"}\x00'),
            receipt_for(ids[2], json.dumps(report(message_id="p-2"))),
        ]
    )
    assert await ingest.replay(database, spool) == 4
    assert spool.backlog() == 0
    assert spool.quarantined() == 0
    assert await statuses(database, ids) == ["delivered", "pending", "delivered"]
    assert [o for o, _ in await receipts_of(database, ids[1])] == ["malformed", "malformed"]


def poison_lines(message_id: uuid.UUID) -> list[dict[str, Any]]:
    """Spool lines the database refuses whatever the batch (a hand edit, an older format)."""
    good = receipt_for(message_id, json.dumps(report())).to_json()
    naive_time = {**good, "received_at": "2026-01-01T00:00:00"}  # no offset: refused on bind
    lone_surrogate = {**good, "body": "\ud800"}  # cannot be encoded as UTF-8 at all
    return [naive_time, lone_surrogate]


async def test_a_poison_spooled_receipt_is_quarantined_and_the_others_replay(
    database: db.Database, tmp_path: Path
) -> None:
    """The replay sets aside what fails on its own, logs why, and applies everything else."""
    ids = [await add_message(database, provider_message_id=f"p-{n}") for n in range(4)]
    spool = Spool(tmp_path / "spool.jsonl")
    naive_time, lone_surrogate = poison_lines(ids[3])
    good = [
        receipt_for(i, json.dumps(report(message_id=f"p-{n}"))).to_json()
        for n, i in enumerate(ids[:3])
    ]
    lines = [good[0], naive_time, good[1], lone_surrogate, good[2]]
    spool.path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    counted = metrics.CALLBACKS.labels(outcome="quarantined")._value.get()
    with capture_logs() as captured:
        assert await ingest.replay(database, spool, batch_size=3) == 5
    assert await statuses(database, ids) == ["delivered", "delivered", "delivered", "pending"]
    assert spool.backlog() == 0
    assert spool.quarantined() == 2
    assert metrics.CALLBACKS.labels(outcome="quarantined")._value.get() == counted + 2
    quarantined = [e for e in captured if e["event"] == "callback_quarantined"]
    assert [e["message_id"] for e in quarantined] == [str(ids[3])] * 2
    assert [e["reason"].split(":")[0] for e in quarantined] == ["ValueError", "UnicodeEncodeError"]
    assert "body" not in repr(quarantined)
    kept = [json.loads(line) for line in spool.quarantine_path.read_text().splitlines()]
    assert [k["body"] for k in kept] == [naive_time["body"], "\ud800"]
    assert all(k["reason"] for k in kept)
    assert await ingest.replay(database, spool) == 0


async def test_a_quarantined_receipt_replays_once_its_cause_is_fixed(
    database: db.Database, tmp_path: Path
) -> None:
    """Nothing acknowledged is lost: the quarantine file has the spool's format."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    spool = Spool(tmp_path / "spool.jsonl")
    naive_time, _ = poison_lines(message_id)
    spool.path.write_text(json.dumps(naive_time) + "\n")
    await ingest.replay(database, spool)
    assert (await fetch_message(database, message_id)).status == status.Status.PENDING
    fixed = json.loads(spool.quarantine_path.read_text())
    fixed["received_at"] += "+00:00"  # what an operator's repair would do
    spool.quarantine_path.unlink()
    spool.path.with_name(f"{spool.path.name}.1.replaying").write_text(json.dumps(fixed) + "\n")
    assert await ingest.replay(database, spool) == 1
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED


async def test_an_unreachable_database_defers_the_replay_and_quarantines_nothing(
    database: db.Database, tmp_path: Path
) -> None:
    """A failing database is not a poison receipt: the spool waits, whole, for the next try."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([receipt_for(message_id, json.dumps(report()))] * 3)
    broken = db.Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        # The refusal propagates, as db.Database translates it (item 5).
        with pytest.raises(errors.DatabaseUnavailable):
            await ingest.replay(broken, spool)
    finally:
        await broken.dispose()
    assert spool.quarantined() == 0
    assert spool.backlog() == 3
    assert await ingest.replay(database, spool) == 3
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED
